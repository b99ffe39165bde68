"""The one way the harness composes ``conf/`` outside ``@hydra.main`` (``compose(overrides)``), what composing
needs registered first (``register_configs``), and the command line's pre-check against the composed tree.

Every entry point that needs a configuration without running it (the override pre-check, the variant of a run,
``reproduce.sh``'s planning, the Table 7 benchmark, the parameter counts) composes here, so that they all see
the config tree ``python -m harness.run`` sees: the same folder, the same resolvers and the ConfigStore entries
of the schemas and of plugin backends. Nothing is registered on import: :func:`register_configs` does it (once),
called by :func:`compose` and by ``harness.run``'s ``main()``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from attention_zoo import available
from attention_zoo.registry import unknown_backend_message
from harness import hydra_dirs
from harness.config import ConfigError, register_attention_configs, register_resolvers, register_schemas
from harness.experiments import CONF_DIR


def register_configs() -> list[str]:
    """Register what composing conf/ needs: the resolvers (``floordiv``, ``split_points``, ``hydra_dir``), the
    schemas' ConfigStore entries and one entry per registered backend without a YAML file (plugins: loading
    them happens here). Idempotent; returns the plugin backends' names it added."""
    register_resolvers()
    hydra_dirs.register_resolver()
    register_schemas()
    return register_attention_configs()


def compose(overrides: Sequence[str] = (), *, hydra_section: bool = False,
            conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``; ``hydra_section=True`` keeps Hydra's own section (a sweep's
    parameters, the launcher)."""
    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside a running app (harness.run): its own config tree
        if Path(conf_dir).resolve() != CONF_DIR:
            raise ValueError(f"cannot compose {conf_dir} inside a running Hydra app (it composes {CONF_DIR})")
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_section)
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_section)


def check_override_keys(overrides: list[str], conf_dir: str) -> None:
    """Fail on a command-line ``key=value`` whose key does not exist, naming it and the valid keys there.

    Hydra refuses such an override too, but without listing what is valid; this composes the config with
    the group choices of ``overrides`` (the first of a sweep's values) and looks each key up. Anything it
    cannot judge (a bad group choice, a syntax error) is left to Hydra's own messages.
    """
    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o and o[0] != "-"])
    except Exception:
        return
    groups, values = [], []
    for override in parsed:
        key = override.key_or_group
        if override.is_add() or override.is_delete() or override.is_force_add() or key.startswith("hydra"):
            continue
        value = next(iter(override.sweep_string_iterator())) if override.is_sweep_override() else (
            override.get_value_element_as_str())
        is_group = (Path(conf_dir) / key).is_dir()
        (groups if is_group else values).append((key, value))
        if key == "attention":
            check_attention_choices(override, conf_dir)
    if not values:
        return
    try:
        cfg = compose([f"{k}={v}" for k, v in groups], conf_dir=conf_dir)
    except Exception:
        return
    for key, _ in values:
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                break
            if part not in node:
                where = ".".join(parts[:depth]) or "the top level"
                raise ConfigError(f"unknown config key {key}; valid keys under {where}: {sorted(node.keys())}")
            node = node[part]


def check_attention_choices(override: Any, conf_dir: str) -> None:
    """Fail on ``attention=NAME`` (each value of a sweep) that is neither a file under conf/attention/ nor a
    registered backend, with the registry's message: Hydra's would list the options but not the plugin that
    failed to load, whose warning scrolled away long before."""
    try:
        names = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.get_value_element_as_str()]
    except Exception:  # a glob or range sweep: left to Hydra
        return
    for name in names:
        if not (Path(conf_dir) / "attention" / f"{name}.yaml").is_file() and name not in available():
            raise ConfigError(f"attention={name}: {unknown_backend_message(name)}")
