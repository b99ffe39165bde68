"""Element-wise maps with a hand-written backward that saves one tensor and runs one pass each way."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _EluPlusOne(torch.autograd.Function):
    """phi(x) = 1 + elu(x); phi'(x) = 1 for x > 0 and exp(x) = phi(x) otherwise, i.e. min(phi(x), 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(x).add_(1.0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return grad * out.clamp(max=1.0)


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """1 + elu(x) (the positive feature map of Katharopoulos et al. and TransNormer), fused: the input is not
    kept for backward and no intermediate elu(x) is stored. First derivatives only."""
    return _EluPlusOne.apply(x)


class _ReluSquared(torch.autograd.Function):
    """relu(x)^2, optionally zeroed above the diagonal; d/dx = 2 relu(x) (zero where masked)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lower_triangular: bool) -> torch.Tensor:
        r = torch.relu(x)
        if lower_triangular:
            r.tril_()
        ctx.save_for_backward(r)
        return r.square()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0), None


def relu_squared(x: torch.Tensor, *, lower_triangular: bool = False) -> torch.Tensor:
    """relu(x)^2 (the GAU's attention weights), with ``lower_triangular`` the causal mask of the last two axes
    applied in the same function (no mask tensor); saves one tensor. First derivatives only."""
    return _ReluSquared.apply(x, lower_triangular)
