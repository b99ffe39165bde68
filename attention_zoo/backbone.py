"""Blocks and backbones: which mixer in which layer is configuration (a layer plan), not code.

A layer plan is one of
- ``None``: every layer uses the backend (a TransNormer preset picks Diag or Norm by layer index);
- a shorthand for the TransNormer presets: ``"split:k"`` (Diag in layers [0, k), Norm after; k = L/2 is
  the preset itself), ``"reverse_split:k"`` (Norm first, then Diag), ``"alternate"`` (Diag, Norm, ...),
  ``"parallel"`` (Diag and Norm side by side in every layer, outputs summed);
- ``{"split": k, "first": SPEC, "second": SPEC}`` for any two mixers (e.g. Table 3's 1+elu then vanilla),
  ``{"alternate": [SPEC, SPEC]}``, ``{"parallel": [SPEC, SPEC]}``;
- a list of one SPEC per layer;
- a hybrid, any backbone: the configured backend everywhere but at chosen layers, where another mixer goes (its
  builder's default knobs, or the SPEC's): ``"hybrid:NAME@everyK"`` (NAME in every K-th layer: 0-based layers
  K-1, 2K-1, ...), ``"hybrid:NAME@I,J"`` (at the 0-based layers I < J < ...), or ``{"hybrid": SPEC, "every": K}``,
  ``{"hybrid": SPEC, "layers": [I, J]}``;
- a named plan (``NAMED_PLANS``, ``register_plan``): ``"minimax_hybrid"`` = ``"hybrid:vanilla@every8"``.
A SPEC is a backend name, a mapping ``{"name": NAME, **knobs}``, or ``{"parallel": [SPEC, ...]}``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attention_zoo.decoding import DecodeState, advance, new_state, positions_of_new, valid_of
from attention_zoo.mixers.base import check_choice, real_tokens_first
from attention_zoo.norms import NORMS, build_norm
from attention_zoo.positional import build_absolute_positional
from attention_zoo.registry import LayerPreset, available, build_mixer, get_spec
from attention_zoo.short_conv import ShortConvMixer

CHANNEL_MIXERS = ("glu", "ffn")


@dataclass
class BackboneShape:
    """The sizes and shape of a backbone, checked when made (the one place for these defaults and checks:
    ``harness.config.ModelConfig`` extends it). The defaults are the paper's language model (PAPER.md
    section 2): 6 layers, D=512, 8 heads, pre-norm with SimpleRMSNorm, GLU channel mixer, sinusoidal positions.
    ``hidden_dim=None``: int(8/3 D) for GLU, 4 D for FFN."""

    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    norm: str = "srmsnorm"
    prenorm: bool = True
    channel_mixer: str = "glu"
    hidden_dim: int | None = None
    activation: str = "gelu"  # of the ffn channel mixer
    dropout: float = 0.1  # residual dropout (and of the embeddings)
    activation_dropout: float = 0.0  # inside the channel mixer, after its activation (fairseq's; the authors' 0)
    positional: str = "sinusoidal"
    max_len: int = 512  # raised to the task's sequence length by the tasks
    short_conv: int = 0  # K > 0: a depthwise causal convolution of size K before every mixer (short_conv.py)

    def __post_init__(self) -> None:
        for key in ("d_model", "n_layers", "n_heads", "max_len"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if isinstance(self.short_conv, bool) or not isinstance(self.short_conv, int) or self.short_conv < 0:
            raise ValueError(f"short_conv={self.short_conv!r} must be a kernel size >= 1, or 0 (none)")
        for key in ("dropout", "activation_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be in [0, 1)")
        for key, choices in (("norm", sorted(NORMS)), ("channel_mixer", list(CHANNEL_MIXERS))):
            if getattr(self, key) not in choices:
                raise ValueError(f"{key}={getattr(self, key)!r} is not valid; valid choices: {choices}")


@dataclass
class BackboneConfig(BackboneShape):
    """Everything that shapes a backbone: its shape, causality and which mixer in which layer."""

    causal: bool = True
    attention: str = "transnormer_t2"
    knobs: dict = field(default_factory=dict)
    layer_plan: Any = None



class FeedForward(nn.Module):
    """Linear - activation - Linear."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        activations = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
        check_choice("activation", activation, activations)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.activation, self.dropout = activations[activation], nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class GatedLinearUnit(nn.Module):
    """TransNormer's channel mixer: W3(silu(W1 x) * W2 x)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.dropout(F.silu(self.w1(x)) * self.w2(x)))


class ParallelMixers(nn.Module):
    """Several mixers on the same input, outputs summed (Table 12's parallel combination)."""

    def __init__(self, mixers: Sequence[nn.Module]):
        super().__init__()
        self.mixers = nn.ModuleList(mixers)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return sum(mixer(x, padding_mask) for mixer in self.mixers)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        state = new_state(batch_size, device, owner=self)
        device = state.count.device
        state.parts = [m.init_state(batch_size, device=device, dtype=dtype) for m in self.mixers]
        return state

    def step(self, x, state: DecodeState, padding_mask=None) -> tuple[torch.Tensor, DecodeState]:
        out = sum(m.step(x, part, padding_mask)[0] for m, part in zip(self.mixers, state.parts))
        advance(state, valid_of(x, padding_mask))
        return out, state


class Block(nn.Module):
    """Token mixer then (unless the mixer owns it) channel mixer, each a residual sublayer."""

    def __init__(self, mixer: nn.Module, channel_mixer: nn.Module | None, cfg: BackboneConfig):
        super().__init__()
        self.mixer, self.channel_mixer, self.prenorm = mixer, channel_mixer, cfg.prenorm
        self.mixer_norm = build_norm(cfg.norm, cfg.d_model)
        self.channel_norm = build_norm(cfg.norm, cfg.d_model) if channel_mixer is not None else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._residual(x, lambda h: self.mixer(h, padding_mask), self.mixer_norm, padding_mask)
        if self.channel_mixer is not None:
            x = self._residual(x, self.channel_mixer, self.channel_norm, padding_mask)
        return x

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        return self.mixer.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x, state: DecodeState, padding_mask=None) -> tuple[torch.Tensor, DecodeState]:
        """``forward`` for the next tokens; the channel mixer and the norms act on each token alone."""
        x = self._residual(x, lambda h: self.mixer.step(h, state, padding_mask)[0], self.mixer_norm, padding_mask)
        if self.channel_mixer is not None:
            x = self._residual(x, self.channel_mixer, self.channel_norm, padding_mask)
        return x, state

    def _residual(self, x, sublayer, norm, padding_mask):
        if self.prenorm:
            return x + self.dropout(sublayer(norm(x, padding_mask)))
        return norm(x + self.dropout(sublayer(x)), padding_mask)


class Backbone(nn.Module):
    """``forward(x[B, N, D] embeddings, padding_mask[B, N] | None) -> [B, N, D]`` hidden states.

    Adds absolute positions (if any), runs the blocks, applies the final norm (pre-norm models). Absolute
    positions count real tokens only (as fairseq's positions do), so a padded batch, whichever side the
    padding is on, gives each sequence what it gets alone.
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.config = cfg
        self.positions = build_absolute_positional(cfg.positional, cfg.d_model, cfg.max_len)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layer_plan = resolve_layer_plan(cfg)
        self.blocks = nn.ModuleList(self._block(entry) for entry in self.layer_plan)
        self.final_norm = build_norm(cfg.norm, cfg.d_model) if cfg.prenorm else None

    def _block(self, entry: tuple[tuple[str, dict], ...]) -> Block:
        cfg = self.config
        mixers = [build_mixer(name, cfg.d_model, cfg.n_heads, cfg.causal, **knobs) for name, knobs in entry]
        mixer = mixers[0] if len(mixers) == 1 else ParallelMixers(mixers)
        if cfg.short_conv:
            mixer = ShortConvMixer(mixer, cfg.d_model, cfg.short_conv)
        owns_channel = all(get_spec(name).owns_channel_mixer for name, _ in entry)
        return Block(mixer, None if owns_channel else self._channel_mixer(), cfg)

    def _channel_mixer(self) -> nn.Module:
        cfg = self.config
        if cfg.channel_mixer == "glu":
            return GatedLinearUnit(cfg.d_model, cfg.hidden_dim or int(8 / 3 * cfg.d_model), cfg.activation_dropout)
        return FeedForward(cfg.d_model, cfg.hidden_dim or 4 * cfg.d_model, cfg.activation, cfg.activation_dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return real_tokens_first(self.run_blocks, x, padding_mask)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodeState:
        """The decoding state of every layer (attention_zoo.decoding); causal backbones only."""
        state = new_state(batch_size, device, owner=self)
        device = state.count.device
        state.parts = [block.init_state(batch_size, device=device, dtype=dtype) for block in self.blocks]
        return state

    def step(self, x: torch.Tensor, state: DecodeState,
             padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        """The hidden states of the next tokens ``x[B, T, D]`` (embeddings), equal to ``forward`` over all
        tokens so far at those positions; ``padding_mask[B, T]`` marks padding (e.g. left-padded prompts)."""
        valid = valid_of(x, padding_mask)
        x = self.dropout(self.positions(x, positions_of_new(state, valid)))
        for block, part in zip(self.blocks, state.parts):
            x, _ = block.step(x, part, padding_mask)
        advance(state, valid)
        return (x if self.final_norm is None else self.final_norm(x, padding_mask)), state

    def run_blocks(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``forward`` for a batch whose padding (if any) is on the right."""
        x = self.dropout(self.positions(x))
        for block in self.blocks:
            x = block(x, padding_mask)
        return x if self.final_norm is None else self.final_norm(x, padding_mask)


# ---------------------------------------------------------------------------------------------- plans
LayerEntry = tuple[tuple[str, dict], ...]  # the mixers of one layer (more than one: parallel)
PLAN_SHORTHANDS = ["split:k", "reverse_split:k", "alternate", "parallel"]
PLAN_KINDS = ("split", "reverse_split", "alternate", "parallel", "hybrid")  # a string plan's word before ':'
HYBRID_FORMS = ["hybrid:NAME@everyK", "hybrid:NAME@I,J,...", "{hybrid: SPEC, every: K}",
                "{hybrid: SPEC, layers: [I, J, ...]}"]
# published hybrid ratios as plans over the configured backend (docs/attention_zoo.md, "Hybrid layer plans")
NAMED_PLANS: dict[str, Any] = {
    "minimax_hybrid": "hybrid:vanilla@every8",  # MiniMax-01 (2025): a softmax layer after every 7 lightning layers
}


def register_plan(name: str, plan: Any, *, replace: bool = False) -> None:
    """Name a layer plan (``attention.layer_plan: NAME``); it must not shadow a shorthand or another name."""
    taken = (name in NAMED_PLANS and not replace) or name.partition(":")[0] in PLAN_KINDS
    if taken:
        raise ValueError(f"layer plan name {name!r} is taken; taken: {sorted(NAMED_PLANS)} and the shorthands")
    NAMED_PLANS[name] = plan


def _spec(spec: Any) -> LayerEntry:
    if isinstance(spec, str):
        return ((spec, {}),)
    if isinstance(spec, Mapping) and "parallel" in spec:
        return tuple(entry for sub in spec["parallel"] for entry in _spec(sub))
    if isinstance(spec, Mapping) and "name" in spec:
        return ((spec["name"], {k: v for k, v in spec.items() if k != "name"}),)
    raise ValueError(
        f"invalid layer spec {spec!r}: expected a backend name, {{name: ..., knobs}} or {{parallel: [...]}}"
    )


def _preset_parts(cfg: BackboneConfig) -> tuple[LayerEntry, LayerEntry]:
    """The two parts of a preset (TransNormer's Diag and Norm layers), with the preset's knobs."""
    preset = get_spec(cfg.attention).preset
    if preset is None:
        presets = sorted(n for n in available() if get_spec(n).preset is not None)
        raise ValueError(
            f"layer_plan shorthand {cfg.layer_plan!r} needs a preset ({presets}), not {cfg.attention!r}; "
            "use {split: k, first: ..., second: ...}"
        )
    first, second = preset.parts(cfg.knobs)
    return (first,), (second,)


def _split(first: LayerEntry, second: LayerEntry, k: int, n_layers: int) -> list[LayerEntry]:
    if not 0 <= k <= n_layers:
        raise ValueError(f"layer_plan split point k={k} is outside [0, n_layers={n_layers}]")
    return [first] * k + [second] * (n_layers - k)


def resolve_layer_plan(cfg: BackboneConfig) -> list[LayerEntry]:
    """One entry per layer: the (backend, knobs) pairs of that layer's mixer(s); a backend that takes the
    layer's position (``layer_index``, ``n_layers``: the presets, Lightning's decay) is told it."""
    index, count = LayerPreset.BACKBONE_KNOBS
    return [
        tuple((name, knobs | {index: i, count: cfg.n_layers} if takes_layer_position(name) else knobs)
              for name, knobs in entry)
        for i, entry in enumerate(_plan_entries(cfg))
    ]


def takes_layer_position(name: str) -> bool:
    return set(LayerPreset.BACKBONE_KNOBS) <= set(get_spec(name).knobs)


def _plan_entries(cfg: BackboneConfig) -> list[LayerEntry]:
    plan, L = cfg.layer_plan, cfg.n_layers
    plan = NAMED_PLANS.get(plan, plan) if isinstance(plan, str) else plan
    if plan is None:
        return [((cfg.attention, dict(cfg.knobs)),)] * L
    if _is_hybrid(plan):
        spec, layers = _hybrid_layers(plan, L)
        base, other = ((cfg.attention, dict(cfg.knobs)),), _spec(spec)
        return [other if i in layers else base for i in range(L)]
    if isinstance(plan, str):
        kind, _, arg = plan.partition(":")
        if kind not in PLAN_KINDS:  # (hybrids are parsed above)
            raise ValueError(f"unknown layer_plan {plan!r}; {_valid_strings()}")
        diag, norm = _preset_parts(cfg)
        if kind in ("split", "reverse_split") and arg.isdigit():
            return _split(diag, norm, int(arg), L) if kind == "split" else _split(norm, diag, int(arg), L)
        if kind == "alternate" and not arg:
            return [(diag, norm)[i % 2] for i in range(L)]
        if kind == "parallel" and not arg:
            return [diag + norm] * L
        raise ValueError(f"unknown layer_plan {plan!r}; {_valid_strings()}")
    if isinstance(plan, Mapping) and "split" in plan:
        return _split(_spec(plan["first"]), _spec(plan["second"]), int(plan["split"]), L)
    if isinstance(plan, Mapping) and "alternate" in plan:
        entries = [_spec(s) for s in plan["alternate"]]
        return [entries[i % len(entries)] for i in range(L)]
    if isinstance(plan, Mapping) and "parallel" in plan:
        return [_spec(plan)] * L
    if isinstance(plan, Sequence):
        if len(plan) != L:
            raise ValueError(f"layer_plan lists {len(plan)} layers but n_layers={L}")
        return [_spec(s) for s in plan]
    raise ValueError(f"invalid layer_plan {plan!r}; valid: None, a mapping, a list or a string ({_valid_strings()})")


def _valid_strings() -> str:
    return f"valid shorthands: {PLAN_SHORTHANDS}, hybrids: {HYBRID_FORMS}, named plans: {sorted(NAMED_PLANS)}"


def _is_hybrid(plan: Any) -> bool:
    return (isinstance(plan, str) and plan.startswith("hybrid:")) or (isinstance(plan, Mapping) and "hybrid" in plan)


def _hybrid_layers(plan: Any, n_layers: int) -> tuple[Any, set[int]]:
    """The SPEC of a hybrid plan and the 0-based layers it goes in, checked against the depth."""
    spec, every, layers = _hybrid_fields(plan)
    if every is not None:
        chosen = list(range(every - 1, n_layers, every))
    else:
        chosen = list(layers)
        outside = [i for i in chosen if not 0 <= i < n_layers]
        if outside:
            raise ValueError(f"layer_plan {plan!r}: layer(s) {outside} outside [0, n_layers={n_layers})")
    if not chosen:  # e.g. every 8th layer of 6: silently the plain backend otherwise
        raise ValueError(f"layer_plan {plan!r} puts {spec!r} in no layer of n_layers={n_layers}")
    return spec, set(chosen)


def _hybrid_fields(plan: Any) -> tuple[Any, int | None, list[int]]:
    """(SPEC, K of every K-th layer or None, the listed layers), or a ValueError naming the valid forms."""
    fields_ = _hybrid_string(plan) if isinstance(plan, str) else _hybrid_mapping(plan)
    _, every, layers = fields_ or (None, 0, [])
    # indices increasing, so that one plan has one spelling (it is the record's variant, a report row)
    increasing = bool(layers) and layers == sorted(set(layers))
    if fields_ is None or (every is not None and every < 1) or (every is None and not increasing):
        raise ValueError(f"invalid hybrid layer_plan {plan!r}; valid forms: {HYBRID_FORMS} (K >= 1; layers 0-based, "
                         "increasing)")
    return fields_


def _hybrid_string(plan: str) -> tuple[Any, int | None, list[int]] | None:
    spec, _, where = plan.removeprefix("hybrid:").partition("@")
    if where.startswith("every"):
        every = where.removeprefix("every")
        return (spec, int(every), []) if spec and every.isdigit() else None
    items = where.split(",")
    return (spec, None, [int(i) for i in items]) if spec and all(i.isdigit() for i in items) else None


def _hybrid_mapping(plan: Mapping) -> tuple[Any, int | None, list[int]] | None:
    if set(plan) - {"hybrid", "every", "layers"} or ("every" in plan) == ("layers" in plan):
        return None
    every, layers = plan.get("every"), plan.get("layers")
    numbers = [every] if every is not None else list(layers) if isinstance(layers, Sequence) else [None]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
        return None
    return plan["hybrid"], every, [] if every is not None else numbers


def build_backbone(attention: str | Mapping = "transnormer_t2", model: Mapping | None = None, **overrides) -> Backbone:
    """Build a backbone from an attention choice and model sizes.

    ``attention``: a backend name, or a mapping ``{name: ..., layer_plan: ..., **knobs}``.
    ``model`` and ``overrides``: the other ``BackboneConfig`` fields (d_model, n_layers, n_heads, causal,
    norm, prenorm, channel_mixer, hidden_dim, activation, dropout, positional, max_len).
    """
    if isinstance(attention, str):
        attention = {"name": attention}
    attention = dict(attention)
    name = attention.pop("name", "transnormer_t2")
    layer_plan = attention.pop("layer_plan", None)
    valid = {f.name for f in fields(BackboneConfig)} - {"attention", "knobs", "layer_plan"}
    sizes = dict(model or {}) | overrides
    unknown = sorted(set(sizes) - valid)
    if unknown:
        raise ValueError(f"unknown backbone option(s) {unknown}; valid options: {sorted(valid)}")
    get_spec(name)
    return Backbone(BackboneConfig(attention=name, knobs=attention, layer_plan=layer_plan, **sizes))
