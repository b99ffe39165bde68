"""Attention restricted to non-overlapping blocks of w tokens (TransNormer's DiagAttention)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_zoo.ops.linear import chunked as to_blocks  # noqa: F401  (re-exported: blocks are chunks)
from attention_zoo.ops.softmax import attention_mask


def from_blocks(x: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, H, nb, w, d] -> [B, H, N, d]``, dropping the padding added by ``to_blocks``."""
    return x.flatten(-3, -2)[..., :length, :]


def block_valid(key_valid: torch.Tensor | None, length: int, block_size: int, device) -> torch.Tensor:
    """Bool ``[B or 1, nb, w]``: real tokens, with the block padding marked invalid."""
    valid = torch.ones(1, length, dtype=torch.bool, device=device) if key_valid is None else key_valid
    pad = (-length) % block_size
    valid = F.pad(valid, (0, pad), value=False)
    return valid.unflatten(-1, (valid.shape[-1] // block_size, block_size))


def attention_within_blocks(
    qb: torch.Tensor,
    kb: torch.Tensor,
    vb: torch.Tensor,
    valid: torch.Tensor | None,
    *,
    causal: bool,
    inner: str = "softmax",
    dropout_p: float = 0.0,
    scale: float = 1.0,
) -> torch.Tensor:
    """Attention inside each block: ``qb, kb, vb`` are ``[B, H, nb, w, d]``, ``valid`` is ``[B, nb, w]``, or None
    when every key is real (causally, keys padded after the last token may count as real: no real query
    sees them).

    ``inner="softmax"``: softmax(scale q k^T) v. ``inner="relu"``: relu(scale q k^T) v with the masked entries
    set to 0 (TransNormer T1). Queries attend only to keys of their own block.
    """
    B, H, nb, w, d = qb.shape
    # [B, H * nb, w, d]: the blocks become heads, so the fused kernel sees ordinary 4-D inputs (a view for
    # contiguous inputs, as the positional encodings' outputs are)
    q, k, v = (t.reshape(B, H * nb, w, t.shape[-1]) for t in (qb, kb, vb))
    if inner == "softmax" and valid is None:  # the kernel's own causal path, no mask tensor at all
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout_p, scale=scale)
        return out.view(B, H, nb, w, -1)
    if valid is None:
        mask = attention_mask(w, w, causal=causal, key_valid=None, device=qb.device)  # [1, 1, w, w] or None
    else:
        flat_valid = valid.expand(B, nb, w).reshape(B * nb, w)
        mask = attention_mask(w, w, causal=causal, key_valid=flat_valid, device=qb.device)  # [B*nb, 1, w, w]
        mask = mask.view(B, 1, nb, w, w).expand(B, H, nb, w, w).reshape(B, H * nb, w, w)
    if inner == "softmax":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    else:
        scores = torch.relu(torch.matmul(q * scale if scale != 1.0 else q, k.transpose(-1, -2)))
        scores = scores if mask is None else scores * mask
        out = torch.matmul(F.dropout(scores, p=dropout_p, training=dropout_p > 0), v)
    return out.view(B, H, nb, w, -1)
