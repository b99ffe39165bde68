"""Feature maps phi of kernel (linear) attention, phi(q) . phi(k) standing in for a similarity of q and k; the
normalised linear attention over them is ``attention_zoo.ops.linear.normalized_linear_attention``.

- ``taylor_exp``: Based's second-order Taylor expansion of exp(q . k / sqrt(d')) (Arora et al. 2024):
  ``phi(q) . phi(k) = 1 + s + s^2 / 2`` with ``s = q . k / sqrt(d')``. Written with each product x_a x_b (a <= b) once:
  ``[1, x / d'^(1/4), x_a x_b / sqrt(d') (a < b), x_a^2 / sqrt(2 d')]``, 1 + d' + d'(d' + 1) / 2 features (153 at
  d' = 16) where the authors' code lists all d'^2 products (273): the same inner product, since
  ``(q . k)^2 = sum_a q_a^2 k_a^2 + 2 sum_{a < b} q_a q_b k_a k_b``.
- ``hedgehog``: Hedgehog's learned map (Zhang et al. 2024): ``[softmax(x W + b), softmax(-(x W + b))]``, one W
  (d x d') and b (d') per head, each softmax over the d' features (2 d' features).
- ``relu``, ``squared_relu``: relu(x) and relu(x)^2, element-wise.

Each takes ``x [B, H, N, d]`` and returns ``[B, H, N, m]``; the maps with parameters take them as arguments (the
mixers own them). Non-negative features throughout, so the normaliser sum_j phi(q_i) . phi(k_j) is >= 0 (Based's
1 + s + s^2 / 2 is >= 1/2 for every s).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def taylor_exp_pairs(feature_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)``: the pairs a <= b of the second-order features (``torch.triu_indices``)."""
    rows, cols = torch.triu_indices(feature_dim, feature_dim, device=device)
    return rows, cols


def taylor_exp(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Based's Taylor features of ``x [..., d']`` (``taylor_exp_pairs``' pairs): ``[..., 1 + d' + d'(d'+1)/2]``."""
    d = x.shape[-1]
    scale = torch.where(rows == cols, x.new_tensor(1 / math.sqrt(2 * d)), x.new_tensor(1 / math.sqrt(d)))
    second = x[..., rows] * x[..., cols] * scale
    return torch.cat([torch.ones_like(x[..., :1]), x * d**-0.25, second], dim=-1)


def hedgehog(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``[softmax(x W_h + b_h), softmax(-(x W_h + b_h))]`` per head h: ``x [B, H, N, d]``, ``weight [H, d, d']``,
    ``bias [H, d']`` -> ``[B, H, N, 2 d']``."""
    z = torch.matmul(x, weight.to(x.dtype))
    if bias is not None:
        z = z + bias.to(x.dtype)[:, None, :]
    return torch.cat([torch.softmax(z, dim=-1), torch.softmax(-z, dim=-1)], dim=-1)


def relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x)


def squared_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()
