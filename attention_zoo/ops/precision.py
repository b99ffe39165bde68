"""Accumulation precision: low-precision inputs (bf16, fp16) accumulate in fp32; float64 stays float64."""
from __future__ import annotations

import contextlib

import torch


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """fp32, or the widest floating dtype among ``tensors`` when that is wider (float64)."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast disabled for this device's type (the kernels choose their own accumulation dtype); nothing on
    a device type without autocast (``meta``, where shape and device checks run without a GPU)."""
    if device.type in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
