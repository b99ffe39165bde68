"""Positional encodings: absolute (sinusoidal, learned) added to embeddings; relative (RoPE, LRPE) on q, k."""
from __future__ import annotations

import math

import torch
from torch import nn

from attention_zoo.ops.precision import accumulation_dtype


def rotation_factors(angles: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``[cos, cos]`` and ``[-sin, sin]`` of ``angles[..., d/2]``: rotating the dimension pairs (x_i, x_{i+d/2})
    of x by the angles is then ``x * c + swap_halves(x) * t``, three passes over x."""
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def swap_halves(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x2, x1], dim=-1)


def inverse_frequencies(dim: int, base: float = 10000.0, device=None, dtype=torch.float32) -> torch.Tensor:
    return base ** (-2.0 * torch.arange(dim // 2, device=device, dtype=dtype) / dim)


def positions_of(x: torch.Tensor, dtype: torch.dtype, positions: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, 1]``: 0..N-1 along the sequence axis of ``x[..., N, d]``; or the given ``positions[B, N]`` (a
    decoding step: each sequence's own offsets) as ``[B, 1, N, 1]`` for heads-first ``x[B, H, N, d]``."""
    if positions is None:
        return torch.arange(x.shape[-2], device=x.device, dtype=dtype)[:, None]
    return positions.to(device=x.device, dtype=dtype)[:, None, :, None]


class _FixedRotation(torch.autograd.Function):
    """The pairs of x rotated by constant angles (``rotation_factors``): three passes over x each way, where
    autograd's form of the rotation takes seven forward and more backward. The backward is the rotation by
    minus the angles (``t`` negated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        c, t = rotation_factors(angles, x.dtype)
        ctx.save_for_backward(c, t)
        return torch.addcmul(x * c, swap_halves(x), t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        c, t = ctx.saved_tensors
        return torch.addcmul(grad * c, swap_halves(grad), t, value=-1), None


class RoPE(nn.Module):
    """Rotary position embedding with fixed frequencies 10000^(-2i/d).

    Angles are computed on the fly in at least fp32 (a bf16 angle at position 10^4 is off by tens of
    radians), so casting the model to a low precision leaves them exact.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension (d_model / n_heads), got {head_dim}")
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        dtype = accumulation_dtype(x)
        inv_freq = inverse_frequencies(self.head_dim, device=x.device, dtype=dtype)
        return _FixedRotation.apply(x, positions_of(x, dtype, positions) * inv_freq)

    def products(self, rows: int) -> float:
        """FLOPs of matrix products per application to ``rows`` vectors: none (element-wise only)."""
        return 0.0


class LRPE(nn.Module):
    """TransNormer's linearised relative positional encoding (the authors' "urpe").

    A Householder reflection x - 2 (x . u) u with a fixed random unit vector u, then a rotation of the
    dimension pairs by learnable angles theta_i initialised at 10000^(-2i/d). Since both q and k get the
    same reflection and rotations by their own positions, q_s . k_t depends on t - s only.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"LRPE needs an even head dimension (d_model / n_heads), got {head_dim}")
        u = torch.randn(head_dim)
        self.register_buffer("householder", u / u.norm())
        self.theta = nn.Parameter(inverse_frequencies(head_dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        d = x.shape[-1]
        u = self.householder.to(x.dtype)
        reflection = torch.eye(d, dtype=x.dtype, device=x.device) - 2 * u[:, None] * u[None, :]
        dtype = accumulation_dtype(x, self.theta)
        angles = positions_of(x, dtype, positions) * self.theta.to(dtype)
        return reflect_and_rotate(x, reflection, angles)

    def products(self, rows: int) -> float:
        """FLOPs of matrix products per application to ``rows`` vectors: the fixed d x 2d product above."""
        d = self.theta.shape[0] * 2
        return 2.0 * rows * d * 2 * d


class _ReflectRotate(torch.autograd.Function):
    """The pairs of ``x @ reflection`` rotated by ``angles`` in three passes over x each way.

    Forward: one product gives r = x H and its halves swapped, [r2, r1] (H's columns rolled by d/2), and
    the rotation is r [cos, cos] + [r2, r1] [-sin, sin]. Backward: the gradient of x is one product of both
    halves' gradients; that of the angles uses d out / d angle = out rotated by 90 degrees, [-out2, out1],
    so it needs only the output: sum over the leading dims of g2 out1 - g1 out2.
    """

    @staticmethod
    def forward(ctx, x, reflection, angles):
        d = x.shape[-1]
        both = torch.matmul(x, torch.cat([reflection, reflection.roll(d // 2, dims=1)], dim=1))
        reflected, swapped = both.unflatten(-1, (2, d)).unbind(-2)
        c, t = rotation_factors(angles, x.dtype)
        out = torch.addcmul(reflected * c, swapped, t)
        ctx.save_for_backward(out, reflection, c, t)
        ctx.angles_shape, ctx.angles_dtype = angles.shape, angles.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        out, reflection, c, t = ctx.saved_tensors
        d = grad.shape[-1]
        grad_x = grad_angles = None
        if ctx.needs_input_grad[0]:
            halves = grad.new_empty(*grad.shape[:-1], 2 * d)
            torch.mul(grad, c, out=halves[..., :d])
            torch.mul(grad, t, out=halves[..., d:])
            matrix = torch.cat([reflection, reflection.roll(d // 2, dims=1)], dim=1)
            grad_x = torch.matmul(halves, matrix.t())
        if ctx.needs_input_grad[2]:
            out1, out2 = out.chunk(2, dim=-1)
            grad1, grad2 = grad.chunk(2, dim=-1)
            per_pair = torch.addcmul(grad2 * out1, grad1, out2, value=-1)
            grad_angles = per_pair.sum_to_size(ctx.angles_shape).to(ctx.angles_dtype)
        return grad_x, None, grad_angles


def reflect_and_rotate(x: torch.Tensor, reflection: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """The pairs of ``x @ reflection`` rotated by ``angles`` (``reflection`` fixed, ``angles`` broadcast over
    x's leading dims) with a fused forward and backward; first derivatives only."""
    return _ReflectRotate.apply(x, reflection, angles)


def build_relative_positional(kind: str, head_dim: int) -> nn.Module:
    """``none`` | ``rope`` | ``lrpe``: a module applied to q and k (per head, along the sequence)."""
    choices = {"none": nn.Identity, "rope": RoPE, "lrpe": LRPE}
    if kind not in choices:
        raise ValueError(f"unknown relative positional encoding {kind!r}; valid choices: {sorted(choices)}")
    return NoPositions() if kind == "none" else choices[kind](head_dim)


class NoPositions(nn.Module):
    """The identity, taking (and ignoring) a decoding step's ``positions`` like the encodings above."""

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return x

    def products(self, rows: int) -> float:
        return 0.0


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """``[length, dim]``: sin on the first half of the dimensions, cos on the second (fairseq's layout)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freq
    table = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.nn.functional.pad(table, (0, dim - 2 * half))


class SinusoidalPositions(nn.Module):
    """Fixed absolute positions, any length."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x[B, N, D]`` plus the rows 0..N-1 of the table (or ``positions[B, N]``, a decoding step's)."""
        n = x.shape[-2] if positions is None else int(positions.max()) + 1
        table = self.table if n <= self.table.shape[0] else sinusoidal_table(n, self.dim).to(x.device)
        return x + (table[: x.shape[-2]] if positions is None else table[positions]).to(x.dtype)


class LearnedPositions(nn.Module):
    """Learned absolute positions, up to ``max_len``."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[-2] if positions is None else int(positions.max()) + 1
        if n > self.embedding.num_embeddings:
            raise ValueError(
                f"sequence of {n} tokens is longer than the learned positions' max_len="
                f"{self.embedding.num_embeddings}; raise model.max_len or use positional=sinusoidal"
            )
        weight = self.embedding.weight
        return x + (weight[:n] if positions is None else weight[positions]).to(x.dtype)


def build_absolute_positional(kind: str, dim: int, max_len: int) -> nn.Module:
    """``none`` | ``sinusoidal`` | ``learned``: a module that adds positions to ``x[B, N, D]``."""
    if kind == "none":
        return NoPositions()
    if kind == "sinusoidal":
        return SinusoidalPositions(dim, max_len)
    if kind == "learned":
        return LearnedPositions(dim, max_len)
    raise ValueError(f"unknown absolute positional encoding {kind!r}; valid: ['learned', 'none', 'sinusoidal']")
