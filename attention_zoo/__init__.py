"""attention_zoo: exact, efficient token mixers for comparing attention variants (pure PyTorch).

Public API:
- ``available()``: every backend name.
- ``build_mixer(name, d_model, n_heads, causal, **knobs)``: one token mixer.
- ``build_backbone(attention, model=None, **sizes)``: blocks, norms, channel mixers and a layer plan.
- ``register(name, builder, *, linear_causal, linear_bidirectional, ...)``: add your own backend (also a
  decorator, and an entry point group ``attention_zoo.backends`` for plugins); docs/add_your_attention.md.
- ``register_preset(name, first, second, shared=...)``: a two-part backend by depth, like TransNormer's.
"""
from attention_zoo.backbone import Backbone, BackboneConfig, build_backbone, resolve_layer_plan
from attention_zoo.mixers.base import MultiHeadMixer
from attention_zoo.registry import (
    REGISTRY,
    LayerPreset,
    MixerSpec,
    available,
    build_mixer,
    get_spec,
    register,
    register_preset,
    unregister,
)

__all__ = [
    "REGISTRY",
    "Backbone",
    "BackboneConfig",
    "LayerPreset",
    "MixerSpec",
    "MultiHeadMixer",
    "available",
    "build_backbone",
    "build_mixer",
    "get_spec",
    "register",
    "register_preset",
    "resolve_layer_plan",
    "unregister",
]
