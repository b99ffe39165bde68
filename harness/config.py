"""Typed schemas of a run's configuration, and the check that turns a composed config into them.

Hydra composes ``conf/``; :func:`validate` then checks every section against its dataclass before any work:
an unknown key, a wrong type or an unknown choice fails with a :class:`ConfigError` naming the key and what is
valid. The task section is checked against its family's schema (``tasks.validate``), the attention section
against the backend's knobs in the ``attention_zoo`` registry.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

import tasks
from attention_zoo import available, build_backbone, get_spec
from attention_zoo.backbone import BackboneShape, takes_layer_position
from attention_zoo.registry import LayerPreset, check_knob_types, unknown_backend_message
from tasks.base import TaskConfig, backbone_options


def floordiv(a: Any, b: Any) -> int:
    return int(a) // int(b)


def mul(a: int, b: int) -> int:
    return int(a) * int(b)


def split_points(n_layers: int) -> str:
    """Every split point k = 0..L of a preset's layer plan, as a sweep's values; k = L/2 is the preset itself
    (``null``), so that run is shared with the tables of the preset (Table 8 beside Table 4)."""
    n_layers = int(n_layers)
    return ",".join("null" if 0 < k == n_layers // 2 else f"split:{k}" for k in range(n_layers + 1))


def register_resolvers() -> None:
    """The interpolations conf/ uses besides Hydra's: ``${floordiv:a,b}`` (an ablation's layer plan split at half
    the layers, whatever the scale's depth: conf/experiment/table9.yaml) and ``${split_points:L}`` (Table 8's
    every split point: conf/experiment/table8.yaml's reproduce section) and ``${mul:a,b}`` (a recall sweep's
    length tied to its number of pairs: conf/experiment/recall.yaml)."""
    for name, function in (("floordiv", floordiv), ("mul", mul), ("split_points", split_points)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)

SCHEDULES = ("inverse_sqrt", "polynomial", "cosine", "constant")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
WANDB_MODES = ("offline", "online", "disabled")
SCALES = ("smoke", "cpu", "paper")
# knobs the backbone sets itself (a preset learns its layer from the layer plan)
BACKBONE_OWNED_KNOBS = LayerPreset.BACKBONE_KNOBS


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the valid choices."""


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; valid choices: {list(choices)}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value!r} must be {'non-negative' if allow_zero else 'positive'}")


# --------------------------------------------------------------------------------- values that become paths
# A run's folder is <run.root>/<task.name>/<attention.name>/<scale.name>/seed<seed>-<hash>: each of these values
# is one folder name (task.name: two, "glue/sst2"), never a way out of run.root. Key -> (parts allowed, example).
PATH_KEYS: dict[str, tuple[int, str]] = {
    "task.name": (2, "'lm', 'glue/sst2', 'lra/listops'"),
    "attention.name": (1, "'transnormer_t2'"),
    "scale.name": (1, "'cpu'"),
}
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # a plain folder name, never ".", ".." or hidden


def check_path_component(key: str, value: Any, max_parts: int = 1, example: str = "") -> None:
    """Raise a ConfigError unless ``value`` is ``max_parts`` or fewer plain folder names joined by '/': no
    '..', no absolute path, no empty part, no backslash or NUL, nothing a filesystem reads specially."""
    parts = value.split("/") if isinstance(value, str) else []
    if not isinstance(value, str):
        why = f"is a {type(value).__name__}, not a string"
    elif "\0" in value:
        why = "contains a NUL character"
    elif "\\" in value:
        why = "contains a backslash"
    elif value.startswith("/") or re.match(r"[A-Za-z]:", value):
        why = "is an absolute path"
    elif any(part in (".", "..") for part in parts):
        why = f"has a {next(part for part in parts if part in ('.', '..'))!r} part"
    elif any(not part for part in parts):
        why = "has an empty part (a leading, trailing or doubled '/')" if value else "is empty"
    elif len(parts) > max_parts:
        why = f"has {len(parts)} parts separated by '/', more than {max_parts}"
    elif not all(PATH_PART.fullmatch(part) for part in parts):
        why = "has a part with another character, a leading '.' or '-', or over 100 characters"
    else:
        return
    shape = "one folder name" if max_parts == 1 else f"up to {max_parts} folder names joined by '/'"
    raise ConfigError(
        f"{key}={value!r} {why}; it becomes part of the run folder <run.root>/<task.name>/<attention.name>/"
        f"<scale.name>/..., so it must be {shape}" + (f" (e.g. {example})" if example else "")
        + ", each of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )


def check_path_keys(cfg: DictConfig) -> None:
    """Every config value that becomes part of a run folder's path, checked (``PATH_KEYS``)."""
    for key, (max_parts, example) in PATH_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None:  # absent: the schema's default (or its own error) applies
            check_path_component(key, value, max_parts, example)


@dataclass
class ModelConfig(BackboneShape):
    """The backbone's shape (``attention_zoo.BackboneShape``: its defaults, the paper's LM, and its checks;
    ``causal`` comes from the task) plus the task model's own options. A task family's sizes at each scale:
    ``conf/preset/<task>/<scale>.yaml``."""

    scale_embeddings: bool = True  # multiply token embeddings by sqrt(d_model) (fairseq)


@dataclass
class TrainerConfig:
    """Optimisation (AdamW + schedule), batching, precision, evaluation and checkpoint cadence.

    ``global_batch_size`` examples make one update; each forward pass takes ``micro_batch_size`` of them per
    process, so gradients accumulate over ``global / (micro * processes)`` passes (it must divide).
    Schedules (lr for update ``u``, counted from 0): ``inverse_sqrt`` (fairseq: linear warmup from
    ``warmup_init_lr``, then ``lr * sqrt(warmup / u)``), ``polynomial`` (linear warmup from 0, then decay to
    ``end_lr`` with ``power``), ``cosine`` (linear warmup from ``warmup_init_lr``, cosine to ``end_lr``),
    ``constant`` (after warmup). ``clip_norm=0`` disables clipping.
    """

    max_steps: int = 1000
    global_batch_size: int = 16  # examples per update, over all accumulation steps and processes
    micro_batch_size: int = 16  # examples per forward pass per process (accumulation = global / micro)
    lr: float = 5e-4
    schedule: str = "inverse_sqrt"  # SCHEDULES
    warmup_steps: int = 0
    warmup_init_lr: float = 1e-7
    end_lr: float = 0.0  # final lr of polynomial and cosine
    power: float = 1.0  # polynomial decay power
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 0.01
    clip_norm: float = 0.0  # 0 = no clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    device: str = "auto"  # auto | cpu | cuda
    eval_every: int = 500  # updates between validation passes (and at the end)
    eval_batch_size: int = 16
    checkpoint_every: int = 500  # updates between checkpoints (and at the end)
    keep_checkpoints: int = 2  # step checkpoints kept besides the best one
    log_every: int = 50
    progress: bool = True  # tqdm progress bar
    compile: bool = False  # torch.compile the training forward (docs/reproduce.md: what it gives on CPU)
    record_gradients: bool = False  # q/k/v gradient norms per update -> gradient_stats.csv (Table 2)

    def __post_init__(self) -> None:
        _choice("trainer.schedule", self.schedule, SCHEDULES)
        _choice("trainer.precision", self.precision, PRECISIONS)
        _choice("trainer.device", self.device, DEVICES)
        for key in ("max_steps", "global_batch_size", "micro_batch_size", "eval_every", "eval_batch_size",
                    "checkpoint_every", "keep_checkpoints", "log_every"):
            _positive(f"trainer.{key}", getattr(self, key))
        for key in ("lr", "warmup_steps", "warmup_init_lr", "end_lr", "weight_decay", "clip_norm"):
            _positive(f"trainer.{key}", getattr(self, key), allow_zero=True)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"trainer.betas={self.betas} must be two numbers in [0, 1)")
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"trainer.global_batch_size={self.global_batch_size} must be a multiple of "
                f"trainer.micro_batch_size={self.micro_batch_size}"
            )


@dataclass
class LoggerConfig:
    """wandb (``mode`` offline by default: nothing leaves the machine) beside the run's local metrics.jsonl,
    which is always written."""

    wandb: bool = True
    mode: str = "offline"
    project: str = "attention-zoo"

    def __post_init__(self) -> None:
        _choice("logger.mode", self.mode, WANDB_MODES)


@dataclass
class ScaleConfig:
    name: str = "cpu"
    description: str = ""

    def __post_init__(self) -> None:
        _choice("scale.name", self.name, SCALES)


@dataclass
class RunSection:
    """Where runs go and what happens when a run is started again."""

    root: str = "results/runs"
    resume: bool = True  # continue from the run folder's last checkpoint
    skip_completed: bool = True  # do nothing when the record says completed with the same config hash


@dataclass
class AttentionConfig:
    """A backend name, its layer plan and its knobs (the knobs are checked against the registry)."""

    name: str
    layer_plan: Any
    knobs: dict[str, Any]

    def as_mapping(self) -> dict[str, Any]:
        """The form ``attention_zoo.build_backbone`` takes."""
        return {"name": self.name, "layer_plan": self.layer_plan, **self.knobs}


@dataclass
class RunConfig:
    task: TaskConfig
    attention: AttentionConfig
    model: ModelConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    scale: ScaleConfig
    run: RunSection
    seed: int = 0


SECTIONS = {"model": ModelConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "scale": ScaleConfig,
            "run": RunSection}
# read by ./reproduce.sh (an experiment's plan), not by a run: accepted, neither hashed nor recorded
PLAN_KEYS = ("reproduce", "report", "claims")  # an experiment file's table sections: not the run's business
ROOT_KEYS = ("task", "attention", *SECTIONS, "seed", *PLAN_KEYS)


def _config_error(section: str, err: OmegaConfBaseException) -> ConfigError:
    """An OmegaConf validation error as a ConfigError naming the full key (and the valid keys if unknown)."""
    key = f"{section}.{err.full_key}" if getattr(err, "full_key", None) else section
    message = f"invalid config key {key}: {str(err).splitlines()[0]}"
    schema = getattr(err, "object_type", None)
    if isinstance(err, ConfigKeyError) and is_dataclass(schema):
        message += f"; valid keys here: {sorted(f.name for f in fields(schema))}"
    return ConfigError(message)


def _keyed(section: str, err: Exception) -> str:
    """A schema check's message with its key given in full (``d_model=0 ...`` -> ``model.d_model=0 ...``)."""
    message = str(err)
    return message if message.startswith(f"{section}.") else f"{section}.{message}"


def _structured(section: str, schema: type, node: Any) -> Any:
    """``node`` merged onto the dataclass ``schema`` and instantiated (running its checks)."""
    if isinstance(node, DictConfig):  # as plain data: a node typed by an earlier merge may hold added keys
        node = OmegaConf.to_container(node, resolve=True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as err:
        raise _config_error(section, err) from None
    except ValueError as err:  # a schema's own check (__post_init__)
        raise ConfigError(_keyed(section, err)) from None


def validate_attention(node: Any) -> AttentionConfig:
    """The attention section: a registered backend (a plugin that failed to load is named, with its error)
    and knobs it has, set and of the types its builder declares."""
    attention = dict(OmegaConf.to_container(node, resolve=True)) if isinstance(node, DictConfig) else dict(node)
    name = attention.pop("name", None)
    if name not in available():
        raise ConfigError(f"attention.name={name!r}: {unknown_backend_message(name)}")
    layer_plan = attention.pop("layer_plan", None)
    valid = sorted(k for k in get_spec(name).knobs if not (takes_layer_position(name) and k in BACKBONE_OWNED_KNOBS))
    unknown = sorted(set(attention) - set(valid))
    if unknown:
        raise ConfigError(f"unknown knob(s) {unknown} under attention for backend {name!r}; valid knobs: {valid}")
    missing = sorted(k for k, v in attention.items() if v == "???")
    if missing:
        raise ConfigError(f"attention.{missing[0]} has no default for backend {name!r}: give it on the command line "
                          f"(attention.{missing[0]}=VALUE)")
    try:
        check_knob_types(name, attention)
    except ValueError as err:
        raise _knob_error(AttentionConfig(name, layer_plan, attention), err) from None
    return AttentionConfig(name, layer_plan, attention)


KNOB_IN_MESSAGE = re.compile(r"knob '(\w+)'")  # how the builders' and check_knob_types' errors name a knob


def _knob_error(attention: AttentionConfig, err: Exception, sizes: dict[str, Any] | None = None) -> ConfigError:
    """A builder's error as a ConfigError naming the config key and value (or, when it names no knob of the
    section, the backend and the model settings it was built with)."""
    named = KNOB_IN_MESSAGE.search(str(err))
    knob = named.group(1) if named else None
    if knob in attention.knobs:
        return ConfigError(f"attention.{knob}={attention.knobs[knob]!r} is not valid for backend "
                           f"{attention.name!r}: {err}")
    where = f"layer_plan={attention.layer_plan!r}"
    if sizes:
        where += ", " + ", ".join(f"model.{k}={sizes[k]!r}" for k in ("d_model", "n_heads", "n_layers") if k in sizes)
    return ConfigError(f"attention={attention.name!r} does not build ({where}): {err}")


def check_attention_builds(attention: AttentionConfig, model: ModelConfig, task: TaskConfig) -> None:
    """Build the backbone once, on the meta device (shapes only: no memory, no data, milliseconds): a knob out
    of range, a layer plan that does not fit the depth, a width the heads or positions cannot split fail here,
    as a ConfigError naming the key, before a run folder exists."""
    sizes = backbone_options(asdict(model)) | {"causal": tasks.task_class(task.name).causal}
    seq_len = getattr(task, "seq_len", None)
    if isinstance(seq_len, int):
        sizes["max_len"] = max(sizes["max_len"], seq_len)
    try:
        try:
            with torch.device("meta"):
                build_backbone(attention.as_mapping(), sizes)
        except (ValueError, TypeError):
            # some operations have no meta form: only an error that a real build repeats is the config's
            with torch.device("cpu"):
                build_backbone(attention.as_mapping(), sizes)
    except (ValueError, TypeError) as err:
        raise _knob_error(attention, err, sizes) from None
    except Exception:  # anything else (a meta-device limitation) is left to the run, which builds it for real
        return


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Check the composed config against the schemas; returns typed sections or raises ConfigError."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    unknown = sorted(set(cfg.keys()) - set(ROOT_KEYS))
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {unknown}; valid keys: {sorted(ROOT_KEYS)}")
    check_path_keys(cfg)
    try:
        task = tasks.validate(cfg.get("task", {}))
    except OmegaConfBaseException as err:
        raise _config_error("task", err) from None
    except ValueError as err:
        raise ConfigError(_keyed("task", err)) from None
    sections = {name: _structured(name, schema, cfg.get(name, {})) for name, schema in SECTIONS.items()}
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be an integer")
    attention = validate_attention(cfg.get("attention", {}))
    check_attention_builds(attention, sections["model"], task)
    return RunConfig(task=task, attention=attention, seed=seed, **sections)


# keys that do not change a run's result: left out of its hash, so changing them reuses the run
UNHASHED = (
    ("logger",), ("run",), ("task", "data", "cache_dir"), ("trainer", "progress"), ("trainer", "log_every"),
    ("trainer", "checkpoint_every"), ("trainer", "keep_checkpoints"), ("trainer", "eval_batch_size"),
)


# keys added after runs were recorded, at the value that reproduces the behaviour before them: left out of the
# hash at that value, so those runs keep their folders (and resume); any other value is hashed
HASHED_UNLESS = {("model", "activation_dropout"): 0.0, ("model", "short_conv"): 0, ("trainer", "compile"): False}


def resolved_dict(cfg: DictConfig) -> dict[str, Any]:
    """The run's configuration as plain data (interpolations resolved), without the ``PLAN_KEYS``."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in PLAN_KEYS}


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved config without the ``UNHASHED`` keys."""
    pruned = json.loads(json.dumps(resolved, default=str))
    for path in UNHASHED:
        node = pruned
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    for path, legacy in HASHED_UNLESS.items():
        node = pruned.get(path[0], {})
        if isinstance(node, dict) and path[1] in node and node[path[1]] == legacy:
            del node[path[1]]
    return hashlib.sha256(json.dumps(pruned, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------- plugin backends' configs
ATTENTION_CONF = Path(__file__).resolve().parent.parent / "conf" / "attention"
_PRIMITIVES = (bool, int, float, str, type(None))


def attention_node(name: str) -> dict[str, Any]:
    """The ``attention`` section of a backend, read off the registry: its name, no layer plan, every knob
    with its default (a knob without a default is ``???``, which Hydra requires on the command line)."""
    node: dict[str, Any] = {"name": name, "layer_plan": None}
    for knob, default in get_spec(name).knobs.items():
        if takes_layer_position(name) and knob in BACKBONE_OWNED_KNOBS:
            continue  # set by the backbone
        if default is inspect.Parameter.empty:
            node[knob] = "???"
        elif isinstance(default, _PRIMITIVES) or (isinstance(default, (list, tuple))
                                                   and all(isinstance(v, _PRIMITIVES) for v in default)):
            node[knob] = list(default) if isinstance(default, tuple) else default
    return node


def register_attention_configs() -> list[str]:
    """Make ``attention=<name>`` work for every registered backend without a file under conf/attention/
    (plugins, backends registered at run time): a config-group entry in Hydra's ConfigStore, composed like
    the YAML files. Returns the names it added."""
    from hydra.core.config_store import ConfigStore

    store, added = ConfigStore.instance(), []
    for name in available():
        if not (ATTENTION_CONF / f"{name}.yaml").is_file():
            store.store(group="attention", name=name, node=attention_node(name))
            added.append(name)
    return added


# ------------------------------------------------------------------------------------ structured configs
def register_schemas() -> None:
    """The sections whose defaults are the dataclasses above, as config-group entries in Hydra's ConfigStore
    (``trainer: default``, ``model: lm``, ``logger: wandb | none``, ``run: default`` in ``conf/config.yaml``):
    the defaults are written once, here; presets and experiments set only what differs, and a key or type
    that a schema does not have fails while Hydra composes, naming the key."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="trainer", name="default", node=TrainerConfig)
    store.store(group="model", name="lm", node=ModelConfig)
    store.store(group="run", name="default", node=RunSection)
    store.store(group="logger", name="wandb", node=LoggerConfig)
    store.store(group="logger", name="none", node=LoggerConfig(wandb=False, mode="disabled"))
