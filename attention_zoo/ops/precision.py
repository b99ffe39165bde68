"""Accumulation precision: low-precision inputs (bf16, fp16) accumulate in fp32; float64 stays float64."""
from __future__ import annotations

import torch


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """fp32, or the widest floating dtype among ``tensors`` when that is wider (float64)."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype
