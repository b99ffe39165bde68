"""Softmax attention over the full sequence, through PyTorch's fused kernel or the explicit matrix."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attention_zoo.ops.precision import accumulation_dtype


def attention_mask(
    n_queries: int,
    n_keys: int,
    *,
    causal: bool,
    key_valid: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Bool mask ``[B or 1, 1, Nq, Nk]`` (True = may attend), or None when nothing is masked.

    The diagonal is always allowed so that a row whose keys are all padding (a padded query) stays
    finite; such rows are zeroed by the mixers afterwards, so they never reach a real token.
    """
    if not causal and key_valid is None:
        return None
    mask = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device)
    if causal:
        mask = torch.tril(mask, diagonal=n_keys - n_queries)
    mask = mask[None, None]
    if key_valid is not None:
        eye = torch.eye(n_queries, n_keys, dtype=torch.bool, device=device)[None, None]
        mask = (mask & key_valid[:, None, None, :]) | eye
    return mask


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    key_valid: torch.Tensor | None = None,
    impl: str = "sdpa",
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale) v with scale = d^-1/2 by default. ``impl="math"`` builds the N x N matrix."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if impl == "sdpa":
        if key_valid is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout_p, scale=scale)
        mask = attention_mask(q.shape[-2], k.shape[-2], causal=causal, key_valid=key_valid, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    mask = attention_mask(q.shape[-2], k.shape[-2], causal=causal, key_valid=key_valid, device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    probs = torch.softmax(scores.to(accumulation_dtype(scores)), dim=-1).to(v.dtype)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    return torch.matmul(probs, v)
