"""Performer (Choromanski et al. 2021): FAVOR+ positive orthogonal random features."""
from __future__ import annotations

import torch

from attention_zoo.maps import AttentionMap, performer_map
from attention_zoo.mixers.base import MultiHeadMixer, check_positive, check_real
from attention_zoo.ops import (
    causal_logscaled_linear_attention,
    normalized_linear_attention,
    orthogonal_gaussian_projection,
    positive_random_features,
)


class PerformerAttention(MultiHeadMixer):
    """Softmax attention approximated by m positive random features, normalised like 1+elu.

    The projection is redrawn every ``redraw_interval`` training forwards (from the global RNG, so a
    seeded run is deterministic) and kept as a buffer, so checkpoints and evaluation use the last draw.
    ``redraw_interval=0`` never redraws.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        n_features: int = 256,
        redraw_interval: int = 1000,
        eps: float = 1e-6,
        chunk_size: int = 64,
        bias: bool = True,
    ):
        super().__init__(d_model, n_heads, causal, bias)
        check_positive("n_features", n_features)
        check_positive("chunk_size", chunk_size)
        check_real("eps", eps, low=0.0)
        if not isinstance(redraw_interval, int) or redraw_interval < 0:
            raise ValueError(f"knob 'redraw_interval' must be an integer >= 0, got {redraw_interval!r}")
        self.n_features, self.redraw_interval = n_features, redraw_interval
        self.eps, self.chunk_size = eps, chunk_size
        self.register_buffer("projection", orthogonal_gaussian_projection(n_features, self.head_dim))
        self.register_buffer("forwards_since_redraw", torch.zeros((), dtype=torch.long))
        # the count on the host, so deciding to redraw reads nothing from the device; read from the buffer once
        # after building or loading (checkpoints keep the buffer), then only written to it
        self._forwards_since_redraw: int | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_forwards_since_redraw", None))

    @torch.no_grad()
    def redraw_projection(self) -> None:
        device = self.projection.device
        self.projection.copy_(orthogonal_gaussian_projection(self.n_features, self.head_dim, device=device))
        self.forwards_since_redraw.zero_()
        self._forwards_since_redraw = 0

    def attend(self, q, k, v, key_valid, x) -> torch.Tensor:
        if self.training and self.redraw_interval:
            if self._forwards_since_redraw is None:  # a meta buffer has no count to read (shape-only passes)
                counter = self.forwards_since_redraw
                self._forwards_since_redraw = 0 if counter.is_meta else int(counter)
            if self._forwards_since_redraw >= self.redraw_interval:
                self.redraw_projection()
            self._forwards_since_redraw += 1
            self.forwards_since_redraw.fill_(self._forwards_since_redraw)  # a write, no read
        q_feat, _ = positive_random_features(q, self.projection)  # its scale cancels but for eps (ops/favor.py)
        if self.causal:
            k_feat, k_log_scale = positive_random_features(k, self.projection, key_valid)
            return causal_logscaled_linear_attention(
                q_feat, k_feat, k_log_scale, v, chunk_size=self.chunk_size, eps=self.eps
            )
        # Bidirectionally every query sees every key: one shift per sequence and head is exact.
        k_feat, _ = positive_random_features(k, self.projection, key_valid, shift="sequence")
        return normalized_linear_attention(q_feat, k_feat, v, causal=False, eps=self.eps)

    def attention_map(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> AttentionMap:
        """The N x N attention this mixer implies (analysis only): attention_zoo.maps.performer_map."""
        q, k, v = self.project_qkv(x)
        return performer_map(q, k, v, key_valid, causal=self.causal, projection=self.projection, eps=self.eps)

    def core_products(self, n: int) -> tuple[float | None, float]:
        """Forward FLOPs of the core's matrix products per sequence (bidirectional):
        features through the constant projection, then phi(K)^T [V, 1]."""
        H, d, m = self.n_heads, self.head_dim, self.n_features
        return H * 2 * 2 * n * m * (d + 1), H * 2 * 2 * n * d * m

    def attend_step(self, q, k, v, valid, positions, state, x) -> torch.Tensor:
        """The causal scan from the state of the earlier tokens (the projection is fixed outside training)."""
        q_feat, _ = positive_random_features(q, self.projection)
        k_feat, k_log_scale = positive_random_features(k, self.projection, valid)
        carry = {name: state.tensors[name] for name in ("state", "reference") if name in state.tensors}
        out = causal_logscaled_linear_attention(q_feat, k_feat, k_log_scale, v, chunk_size=self.chunk_size,
                                                eps=self.eps, carry=carry)
        state.tensors.update(carry)
        return out
