"""Pure tensor functions that hold the attention algorithms (no parameters, no modules).

Shapes: ``q, k, v`` are ``[B, H, N, d]``; ``key_valid`` is a bool ``[B, N]`` (True marks a real token).
"""
from attention_zoo.ops.block import attention_within_blocks, block_valid, from_blocks, to_blocks
from attention_zoo.ops.elementwise import elu_plus_one, relu_squared
from attention_zoo.ops.favor import (
    causal_logscaled_linear_attention,
    orthogonal_gaussian_projection,
    positive_random_features,
)
from attention_zoo.ops.linear import (
    chunked,
    linear_attention,
    normalized_linear_attention,
    states_of_earlier_chunks,
)
from attention_zoo.ops.softmax import softmax_attention

__all__ = [
    "attention_within_blocks",
    "block_valid",
    "chunked",
    "elu_plus_one",
    "orthogonal_gaussian_projection",
    "states_of_earlier_chunks",
    "causal_logscaled_linear_attention",
    "from_blocks",
    "linear_attention",
    "normalized_linear_attention",
    "positive_random_features",
    "relu_squared",
    "softmax_attention",
    "to_blocks",
]
