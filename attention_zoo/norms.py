"""Normalisations, all with ``forward(x[..., D], padding_mask=None)``; only BatchNorm reads the mask."""
from __future__ import annotations

import torch
from torch import nn

from attention_zoo.ops.precision import accumulation_dtype


class SimpleRMSNorm(nn.Module):
    """TransNormer's norm: y = x / (||x||_2 D^-1/2 + 1e-8), no learnable parameter."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.scale, self.eps = dim**-0.5, eps

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        wide = x.to(accumulation_dtype(x))
        norm = wide.norm(dim=-1, keepdim=True) * self.scale
        return (wide * (norm + self.eps).reciprocal()).to(x.dtype)  # one reciprocal per row, not D divisions


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(x)


class LayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(x)


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the real tokens of ``x[B, N, D]`` (padded tokens neither feed nor get statistics).

    Batch statistics mix all positions of the batch, so it is only valid for bidirectional models.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        # set to a list by a trainer of several processes: each training forward appends its batch's mean and
        # unbiased variance [2, D], so that every process can replay all processes' updates of the running
        # statistics in the order one process makes them
        self.recorded: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if padding_mask is None:
            if self.recorded is not None and self.norm.training:
                flat = x.detach().flatten(0, -2)
                self.recorded.append(torch.stack([flat.mean(0), flat.var(0, unbiased=True)]).float())
            return self.norm(x.flatten(0, -2)).view_as(x)
        return self._masked(x, (~padding_mask)[..., None].to(x.dtype))

    def _masked(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``nn.BatchNorm1d`` over the real tokens, weighted by ``real[B, N, 1]`` instead of selected by a boolean
        index (whose data-dependent size reads the mask back to the host every step); padded outputs are 0."""
        norm = self.norm
        if norm.training or norm.running_mean is None:
            count = real.sum()
            mean = (x * real).sum((0, 1)) / count
            var = ((x - mean) ** 2 * real).sum((0, 1)) / count
            if norm.training and norm.running_mean is not None:
                with torch.no_grad():
                    norm.num_batches_tracked += 1
                    momentum = norm.momentum if norm.momentum is not None else 1 / norm.num_batches_tracked
                    unbiased = var * count / (count - 1).clamp(min=1)
                    if self.recorded is not None:
                        self.recorded.append(torch.stack([mean, unbiased]).float())
                    norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
                    norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)
        else:
            mean, var = norm.running_mean, norm.running_var
        out = (x - mean) * torch.rsqrt(var + norm.eps)
        if norm.affine:
            out = out * norm.weight + norm.bias
        return out * real


class PerHeadRMSNorm(nn.Module):
    """RMSNorm of each head's slice of ``x[..., H d]`` (RetNet's and GLA's norm of the heads' outputs), with one
    gain of d shared by the heads (``affine``) or none."""

    def __init__(self, n_heads: int, head_dim: int, affine: bool = True, eps: float = 1e-6):
        super().__init__()
        self.n_heads, self.eps = n_heads, eps
        self.weight = nn.Parameter(torch.ones(head_dim)) if affine else None

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        heads = x.unflatten(-1, (self.n_heads, -1)).to(accumulation_dtype(x))
        heads = heads * torch.rsqrt(heads.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            heads = heads * self.weight.to(heads.dtype)
        return heads.flatten(-2).to(x.dtype)


class Identity(nn.Module):
    def __init__(self, dim: int):
        super().__init__()

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return x


NORMS = {
    "srmsnorm": SimpleRMSNorm,
    "rmsnorm": RMSNorm,
    "layernorm": LayerNorm,
    "batchnorm": MaskedBatchNorm,
    "none": Identity,
}


def build_norm(kind: str, dim: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; valid choices: {sorted(NORMS)}")
    return NORMS[kind](dim)
