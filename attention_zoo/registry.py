"""One registry: name -> mixer builder, its knobs and its capability flags.

A knob's default is written once, in the builder's signature (a class's ``__init__``, a function, or a
``functools.partial`` that sets one: FLASH); the registry reads it off with ``inspect.signature`` and
conf/attention/<name>.yaml repeats it for Hydra, checked by tests/attention_zoo/test_knob_defaults.py.
"""
from __future__ import annotations

import collections.abc
import functools
import importlib.metadata
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from attention_zoo.mixers.decayed import GatedLinearAttention, LightningAttention, Retention
from attention_zoo.mixers.delta import DeltaNet, GatedDeltaNet
from attention_zoo.mixers.feature_maps import (
    BasedLinearAttention,
    HedgehogAttention,
    ReluAttention,
    SquaredReluAttention,
)
from attention_zoo.mixers.gated import FLASH, GatedAttentionUnit
from attention_zoo.mixers.hgrn import HGRN2
from attention_zoo.mixers.kernel import CosFormerAttention, EluLinearAttention
from attention_zoo.mixers.long_short import LongShortAttention
from attention_zoo.mixers.mamba import Mamba2
from attention_zoo.mixers.performer import PerformerAttention
from attention_zoo.mixers.softmax import SoftmaxAttention
from attention_zoo.mixers.transnormer import DiagAttention, NormAttention


@dataclass(frozen=True)
class MixerSpec:
    """What the harness needs to know about a backend without building it.

    ``linear_causal`` / ``linear_bidirectional``: time and memory grow linearly with N in that mode.
    ``owns_channel_mixer``: the mixer replaces attention *and* FFN (blocks then have no FFN sublayer).
    ``needs_max_length``: the mixer must be told the maximum length (none here need it; cosFormer may).
    ``prefix_consistent``: in causal mode, the output at t is the same whatever the total length.
    ``fixed_knobs``: builder arguments set for this backend and hidden from its knobs. ``default_knobs``: a
    plugin's defaults over its builder's (the built-ins write theirs in the builder: see ``signature_knobs``).
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    linear_causal: bool
    linear_bidirectional: bool
    owns_channel_mixer: bool = False
    needs_max_length: bool = False
    prefix_consistent: bool = True
    fixed_knobs: dict = field(default_factory=dict)
    default_knobs: dict = field(default_factory=dict)
    preset: LayerPreset | None = None

    @property
    def knobs(self) -> dict:
        """Knob name -> default, read off the builder's signature (the fixed ones excluded); a preset's are
        its builder's (its position in the backbone) and its shared knobs, defaults from its parts."""
        if self.preset is not None:
            return signature_knobs(self.builder) | self.preset.shared_defaults()
        return signature_knobs(self.builder, exclude=self.fixed_knobs) | self.default_knobs


MIXER_ARGUMENTS = ("d_model", "n_heads", "causal")  # every builder's first three: sizes, not knobs


def signature_knobs(builder: Callable, exclude: Collection[str] = ()) -> dict[str, Any]:
    """Knob -> default of each parameter of ``builder`` in order, but ``MIXER_ARGUMENTS``, ``exclude`` and a
    ``**knobs`` catch-all (a preset's builder passes those on to its parts)."""
    return {
        name: p.default
        for name, p in inspect.signature(builder).parameters.items()
        if name not in MIXER_ARGUMENTS and name not in exclude and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


@dataclass(frozen=True)
class LayerPreset:
    """A backend made of two mixers by depth, as data: ``first`` in layers [0, L/2), ``second`` in [L/2, L)
    (TransNormer: DiagAttention early, NormAttention late). Each part is ``(backend, fixed knobs)``;
    ``shared`` are the preset's own knobs, each given to the parts whose builder takes it: names, whose defaults
    are the parts' (``shared_defaults``), or a mapping name -> default (``register_preset(shared={...})``).
    The layer plan's shorthands (``split:k``, ``reverse_split:k``, ``alternate``, ``parallel``) recombine
    the two parts. The backbone tells each layer where it is through ``BACKBONE_KNOBS``."""

    first: tuple[str, dict]
    second: tuple[str, dict]
    shared: Mapping[str, Any] | Sequence[str] = ()
    BACKBONE_KNOBS: ClassVar[tuple[str, ...]] = ("layer_index", "n_layers")

    def shared_defaults(self) -> dict[str, Any]:
        """Shared knob -> default: a mapping's own, or read off the first part whose backend has the knob (so
        that a default is written once, in that part's builder)."""
        if isinstance(self.shared, Mapping):
            return dict(self.shared)
        part_knobs = [get_spec(name).knobs for name, _ in (self.first, self.second)]
        missing = [k for k in self.shared if not any(k in knobs for knobs in part_knobs)]
        if missing:
            raise ValueError(f"shared knob(s) {missing} of neither part ({self.first[0]!r}, {self.second[0]!r})")
        return {k: next(knobs[k] for knobs in part_knobs if k in knobs) for k in self.shared}

    def parts(self, knobs: dict) -> tuple[tuple[str, dict], tuple[str, dict]]:
        """The two parts with ``knobs`` (the preset's shared ones) handed to those that take them."""
        shared = {k: v for k, v in knobs.items() if k not in self.BACKBONE_KNOBS}
        unknown = sorted(set(shared) - set(self.shared))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown} for this preset; valid knobs: {sorted(self.shared)}")
        return tuple(  # type: ignore[return-value]
            (name, fixed | {k: v for k, v in shared.items() if k in get_spec(name).knobs})
            for name, fixed in (self.first, self.second)
        )

    def builder(self) -> Callable[..., nn.Module]:
        def build(d_model: int, n_heads: int, causal: bool, layer_index: int = 0, n_layers: int = 2,
                  **knobs) -> nn.Module:
            if not 0 <= layer_index < n_layers:
                raise ValueError(f"layer_index={layer_index} is outside [0, n_layers={n_layers})")
            first, second = self.parts(self.shared_defaults() | knobs)
            name, part_knobs = first if layer_index < n_layers // 2 else second
            return build_mixer(name, d_model, n_heads, causal, **part_knobs)

        return build


def _transnormer(diag: dict, norm: dict) -> LayerPreset:
    # defaults: DiagAttention's block_size, pos and bias, NormAttention's chunk_size
    return LayerPreset(("diag_attention", diag), ("norm_attention", norm), ("block_size", "chunk_size", "pos", "bias"))


PRESETS = {
    "transnormer_t1": _transnormer({"inner": "relu", "norm": "srmsnorm"}, {"feature_map": "elu", "norm": "srmsnorm"}),
    "transnormer_t2": _transnormer({"inner": "softmax", "norm": "none"}, {"feature_map": "1+elu", "norm": "srmsnorm"}),
}

_SPECS = [
    MixerSpec("vanilla", SoftmaxAttention, "softmax attention (SDPA; impl=math materialises N x N)", False, False),
    MixerSpec("elu", EluLinearAttention, "1+elu linear attention (Katharopoulos et al. 2020)", True, True),
    MixerSpec("performer", PerformerAttention, "FAVOR+ positive orthogonal random features", True, True),
    MixerSpec(
        "cosformer", CosFormerAttention, "ReLU features with cos re-weighting (Qin et al. 2022)", True, True,
        prefix_consistent=False,  # M = the current length unless max_len is set
    ),
    MixerSpec(
        "flash_quad", GatedAttentionUnit, "gated attention unit, quadratic relu^2 attention (FLASH-quad)",
        False, False, owns_channel_mixer=True, prefix_consistent=False, fixed_knobs={"group_size": None},
    ),
    MixerSpec(
        "flash", FLASH, "gated attention unit, mixed chunk attention (FLASH)", True, True, owns_channel_mixer=True,
    ),
    MixerSpec("ls", LongShortAttention, "Transformer-LS long-short attention", False, True),
    MixerSpec("norm_attention", NormAttention, "TransNormer NormAttention: Norm(phi(Q)(phi(K)^T V))", True, True),
    MixerSpec("diag_attention", DiagAttention, "TransNormer DiagAttention: attention inside blocks", True, True),
    *(
        MixerSpec(name, preset.builder(), f"{name}: Diag in the first half of the layers, Norm after", True, True,
                  preset=preset)
        for name, preset in PRESETS.items()
    ),
    # TransNormer's successors (not in the paper): linear attention with a decay (attention_zoo/ops/decay.py)
    MixerSpec("lightning", LightningAttention, "TransNormerLLM's Lightning Attention: per-head decay by layer, LRPE, "
              "SRMSNorm, gate", True, True),
    MixerSpec("retnet", Retention, "RetNet's multi-scale retention: fixed per-head decays, rotary, gate", True, True),
    MixerSpec("gla", GatedLinearAttention, "gated linear attention: data-dependent decay per key channel", True, True),
    # the delta rule (attention_zoo/ops/delta.py) and Mamba-2's SSD (ops/decay.py), not in the paper either
    MixerSpec("deltanet", DeltaNet, "DeltaNet: the delta rule, chunked by its WY representation", True, True),
    MixerSpec("gated_deltanet", GatedDeltaNet, "Gated DeltaNet: the delta rule with a data-dependent decay, gate",
              True, True),
    MixerSpec("mamba2", Mamba2, "Mamba-2's SSD: scalar data-dependent decay, shared B and C, conv, gate", True, True),
    # feature maps on the normalised linear attention (attention_zoo/ops/linear.py) and HGRN2 (ops/decay.py)
    MixerSpec("based", BasedLinearAttention, "Based's linear attention: 2nd-order Taylor features of exp(q.k)",
              True, True),
    MixerSpec("hedgehog", HedgehogAttention, "Hedgehog: learned per-head [softmax(xW), softmax(-xW)] features",
              True, True),
    MixerSpec("relu", ReluAttention, "linear attention with ReLU features, normalised", True, True),
    MixerSpec("relu2", SquaredReluAttention, "linear attention with squared-ReLU features, normalised", True, True),
    MixerSpec("hgrn2", HGRN2, "HGRN2: gated linear RNN with outer-product state expansion, lower-bounded forget gate",
              True, True),
]
SUCCESSORS = ("lightning", "retnet", "gla")
DELTA_AND_SSD = ("deltanet", "gated_deltanet", "mamba2")  # beyond TransNormer's successors (docs/attention_zoo.md)
FEATURE_MAPS_AND_HGRN2 = ("based", "hedgehog", "relu", "relu2", "hgrn2")  # the rest of the 2026 zoo
REGISTRY: dict[str, MixerSpec] = {spec.name: spec for spec in _SPECS}
BUILTIN = frozenset(REGISTRY)
SPEC_ATTRIBUTE = "__attention_zoo_spec__"  # the capability flags a decorated builder carries
CAPABILITIES = (
    "owns_channel_mixer", "needs_max_length", "prefix_consistent", "fixed_knobs", "default_knobs", "preset",
)
# a backend's name is a config choice (attention=NAME) and a folder of every run (<run.root>/<task>/NAME/...)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_name(name: str) -> None:
    """Raise a ValueError unless ``name`` can be a backend's name (a safe folder name and config choice)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"invalid attention backend name {name!r}: it becomes a folder of every run and a config "
                         "choice, so it must be 1-100 letters, digits, '_', '.' or '-', not starting with '.' or '-' "
                         "(e.g. 'relu_linear')")


def register(name: str, builder: Callable[..., nn.Module] | None = None, *, linear_causal: bool,
             linear_bidirectional: bool, description: str = "", replace: bool = False, **capabilities):
    """Add the backend ``name`` (``builder(d_model, n_heads, causal, **knobs) -> nn.Module`` with
    ``forward(x[B, N, D], padding_mask[B, N] | None) -> [B, N, D]``), with the same flags as the built-ins.

    ``register("mine", MyMixer, linear_causal=True, linear_bidirectional=True)``, or as a decorator:
    ``@register("mine", linear_causal=True, linear_bidirectional=True)``. The flags are also attached to the
    builder, so an entry point (group ``attention_zoo.backends``) can name it alone. Registering a name that
    exists fails, naming it, unless ``replace=True``.
    """
    check_name(name)
    unknown = sorted(set(capabilities) - set(CAPABILITIES))
    if unknown:
        raise TypeError(f"register({name!r}): unknown capability flag(s) {unknown}; valid: {list(CAPABILITIES)}")

    def add(target: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(target):
            raise TypeError(f"register({name!r}): the builder must be callable, got {type(target).__name__}")
        flags = {"linear_causal": linear_causal, "linear_bidirectional": linear_bidirectional,
                 "description": description or (target.__doc__ or "").strip().split("\n")[0], **capabilities}
        existing = REGISTRY.get(name)
        if existing is not None and not replace and existing.builder is not target:
            where = "a built-in backend" if name in BUILTIN else f"already registered ({_origin(existing.builder)})"
            raise ValueError(f"attention backend {name!r} is {where}; choose another name or pass replace=True")
        setattr(target, SPEC_ATTRIBUTE, {"name": name, **flags})
        REGISTRY[name] = MixerSpec(name, target, **flags)
        return target

    return add if builder is None else add(builder)


def register_preset(name: str, first: str | tuple[str, dict], second: str | tuple[str, dict], *,
                    shared: Mapping[str, Any] | Sequence[str] | None = None, description: str = "",
                    replace: bool = False) -> LayerPreset:
    """Add a two-part backend like TransNormer's: ``first`` in layers [0, L/2), ``second`` after, each a
    registered backend name or ``(name, fixed knobs)``; ``shared``: the preset's knobs, names (defaults from
    the parts' builders) or a mapping name -> default. It is linear in a mode when both parts are, and the
    layer plan's shorthands work with it."""
    first, second = ((p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in (first, second))
    specs = [get_spec(part) for part, _ in (first, second)]
    if isinstance(shared, str):
        shared = (shared,)
    preset = LayerPreset(first, second, dict(shared) if isinstance(shared, Mapping) else tuple(shared or ()))
    preset.shared_defaults()  # a shared name that neither part takes fails here, not at the first build
    register(name, preset.builder(), description=description or f"{first[0]} early, {second[0]} late",
             linear_causal=all(s.linear_causal for s in specs),
             linear_bidirectional=all(s.linear_bidirectional for s in specs), replace=replace, preset=preset)
    return preset


def _origin(builder: Callable) -> str:
    builder = _unpartial(builder)
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', repr(builder))}"


def _unpartial(builder: Callable) -> Callable:
    """The function or class a ``functools.partial`` builder (FLASH's) wraps: where its annotations live."""
    while isinstance(builder, functools.partial):
        builder = builder.func
    return builder


def unregister(name: str) -> None:
    """Remove a registered (non built-in) backend."""
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in backend and cannot be unregistered")
    REGISTRY.pop(name, None)


def available() -> list[str]:
    """Every registered backend name: the built-ins, then plugins and backends registered at run time."""
    load_plugins()
    return list(REGISTRY)


def get_spec(name: str) -> MixerSpec:
    load_plugins()
    if name not in REGISTRY:
        raise ValueError(unknown_backend_message(name))
    return REGISTRY[name]


def unknown_backend_message(name: str) -> str:
    """Why ``name`` is not a backend: the valid names and, since their warning scrolled away long before,
    the plugins that failed to load (the one called ``name`` first)."""
    failures = failed_plugins()
    if name in failures:
        message = f"attention backend {name!r} is a plugin that failed to load: {failures[name]}"
    else:
        message = f"unknown attention backend {name!r}"
    message += f"; valid choices: {available()}"
    others = [str(f) for n, f in failures.items() if n != name]
    if others:
        message += "; plugin(s) that failed to load: " + "; ".join(others)
    return message


def build_mixer(name: str, d_model: int, n_heads: int, causal: bool, **knobs) -> nn.Module:
    """Build the token mixer ``name``; ``forward(x[B, N, D], padding_mask[B, N] | None) -> [B, N, D]``."""
    spec = get_spec(name)
    unknown = sorted(set(knobs) - set(spec.knobs))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown} for backend {name!r}; valid knobs: {sorted(spec.knobs)}")
    return spec.builder(d_model, n_heads, causal, **(spec.fixed_knobs | spec.default_knobs | knobs))


# ---------------------------------------------------------------------------------------- knob types
def knob_annotations(name: str) -> dict[str, Any]:
    """Knob -> the type its builder declares, resolved (``int``, ``float | None``, ``Literal[...]``); a
    preset's shared knob takes the annotation of the first part whose builder has it. Knobs without an
    annotation that resolves are left out."""
    spec = get_spec(name)
    if spec.preset is not None:
        annotations: dict[str, Any] = {}
        for part, _ in (spec.preset.second, spec.preset.first):  # the first part's wins
            annotations |= {k: v for k, v in knob_annotations(part).items() if k in spec.preset.shared}
        return annotations
    hints = _type_hints(spec.builder)
    return {knob: hints[knob] for knob in spec.knobs if knob in hints}


def _type_hints(builder: Callable) -> dict[str, Any]:
    builder = _unpartial(builder)
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # one annotation that does not resolve (a name imported for type checkers only)
        pass
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    hints = {}
    for knob, parameter in inspect.signature(builder).parameters.items():
        if parameter.annotation is inspect.Parameter.empty:
            continue

        def one() -> None: ...

        one.__annotations__ = {knob: parameter.annotation}
        try:  # the others, one at a time
            hints |= typing.get_type_hints(one, globalns=dict(namespace))
        except Exception:
            continue
    return hints


def type_mismatch(value: Any, annotation: Any) -> str | None:
    """None when ``value`` (as a config gives it: None, bool, int, float, str, list, dict) fits ``annotation``;
    else the expected type in words. An annotation this check does not understand accepts anything."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return None
    if annotation is None or annotation is type(None):
        return None if value is None else "None"
    if origin in (typing.Union, types.UnionType):
        expected = [type_mismatch(value, a) for a in args]
        return None if None in expected else " or ".join(expected)  # type: ignore[arg-type]
    if origin is typing.Literal:
        return None if value in args else f"one of {list(args)}"
    if annotation is bool:
        return None if isinstance(value, bool) else "bool (true or false)"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "int"
    if annotation is float:  # an int is a float, as in Python
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "float"
    if annotation is str:
        return None if isinstance(value, str) else "str"
    sequences = (list, tuple, collections.abc.Sequence)
    if annotation in sequences or origin in sequences:
        if not isinstance(value, (list, tuple)):
            return "a list"
        item = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else Any
        wrong = next((w for w in (type_mismatch(v, item) for v in value) if w is not None), None)
        return None if wrong is None else f"a list of {wrong}"
    if annotation in (dict, collections.abc.Mapping) or origin in (dict, collections.abc.Mapping):
        return None if isinstance(value, dict) else "a mapping"
    return None


def check_knob_types(name: str, knobs: dict[str, Any]) -> None:
    """Raise a ValueError naming the first knob whose value does not fit its builder's annotation (the
    builders check ranges and choices themselves when built). A knob at its builder's default is accepted,
    whatever the annotation says: the default is the author's own choice."""
    defaults, annotations = get_spec(name).knobs, knob_annotations(name)
    for knob, value in knobs.items():
        at_default = knob in defaults and type(value) is type(defaults[knob]) and value == defaults[knob]
        if knob not in annotations or at_default:
            continue
        expected = type_mismatch(value, annotations[knob])
        if expected is not None:
            raise ValueError(f"knob {knob!r} must be {expected} (its annotation in {_origin(get_spec(name).builder)}), "
                             f"got {value!r} ({type(value).__name__})")


# ---------------------------------------------------------------------------------------------- plugins
PLUGIN_GROUP = "attention_zoo.backends"
_plugins_loaded = False


@dataclass(frozen=True)
class PluginFailure:
    """An entry point of ``attention_zoo.backends`` that could not be registered, and why."""

    name: str
    target: str  # the entry point's value, "package.module:Builder"
    distribution: str
    error: str  # "ModuleNotFoundError: No module named 'x'"

    def __str__(self) -> str:
        return f"{self.name!r} from {self.distribution} ({self.target}): {self.error}"


PLUGIN_ERRORS: dict[str, PluginFailure] = {}  # entry point name -> why it could not be registered


def failed_plugins() -> dict[str, PluginFailure]:
    """The entry points that could not be registered (loading the plugins first), by name."""
    load_plugins()
    return dict(PLUGIN_ERRORS)


def load_plugins() -> None:
    """Register every entry point of the group ``attention_zoo.backends`` (once, at first use).

    An entry point ``name = "pkg.module:Builder"`` registers ``Builder`` under ``name`` with the flags that
    ``@register`` attached to it. One that fails to import or carries no flags is reported (with its
    distribution and the error) and skipped; the built-in backends keep working.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        distribution = getattr(entry.dist, "name", None) or "an unknown distribution"
        try:
            builder = entry.load()
            flags = dict(getattr(builder, SPEC_ATTRIBUTE, None) or {})
            if not flags:
                raise TypeError(f"{entry.value} carries no capability flags: decorate it with "
                                f"@attention_zoo.register({entry.name!r}, linear_causal=..., linear_bidirectional=...)")
            flags.pop("name", None)
            if REGISTRY.get(entry.name) is None or REGISTRY[entry.name].builder is not builder:
                register(entry.name, builder, **flags)
        except Exception as err:  # a broken plugin must not take the built-ins down
            failure = PluginFailure(entry.name, entry.value, distribution, f"{type(err).__name__}: {err}")
            PLUGIN_ERRORS[entry.name] = failure
            warnings.warn(f"attention_zoo plugin {entry.name!r} from {distribution} ({entry.value}) was not "
                          f"registered: {failure.error}", RuntimeWarning, stacklevel=2)
