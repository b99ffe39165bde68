"""ReLU linear attention: o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j) with phi = relu(.) + eps,
over j <= i (causal) or all j, through attention_zoo's chunked linear-attention kernel: linear in N."""
import torch

import attention_zoo
from attention_zoo.mixers.base import zero_padded
from attention_zoo.ops import linear_attention

EPS = 1e-2  # keeps the normaliser positive when every feature of a query is zero


@attention_zoo.register("relu_linear", linear_causal=True, linear_bidirectional=True,
                        description="ReLU-feature linear attention with its normaliser")
class ReluLinearAttention(attention_zoo.MultiHeadMixer):
    def __init__(self, d_model: int, n_heads: int, causal: bool, chunk_size: int = 64, bias: bool = True):
        super().__init__(d_model, n_heads, causal, bias)
        self.chunk_size = chunk_size

    def attend(self, q, k, v, key_valid, x):  # [B, H, N, d]; key_valid [B, N] or None
        q, k = torch.relu(q) + EPS, zero_padded(torch.relu(k) + EPS, key_valid)
        ones = torch.ones_like(v[..., :1])
        both = linear_attention(q, k, torch.cat([v, ones], -1), causal=self.causal, chunk_size=self.chunk_size)
        return both[..., :-1] / both[..., -1:].clamp_min(torch.finfo(v.dtype).tiny)  # 0 / tiny: a padded row


def reference(module, x, padding_mask, causal):
    """float64, one sequence at a time, the N x N matrix of phi(q).phi(k) normalised by its row sums."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        real = torch.arange(x.shape[1]) if padding_mask is None else (~padding_mask[b]).nonzero()[:, 0]
        h, d = module.n_heads, module.head_dim
        q, k, v = (proj(x[b, real]).view(-1, h, d).transpose(0, 1) for proj in
                   (module.q_proj, module.k_proj, module.v_proj))
        weights = (torch.relu(q) + EPS) @ (torch.relu(k) + EPS).transpose(-1, -2)
        if causal:
            weights = weights.tril()
        mixed = weights @ v / weights.sum(-1, keepdim=True)
        out[b, real] = module.out_proj(mixed.transpose(0, 1).reshape(len(real), -1))
    return out
