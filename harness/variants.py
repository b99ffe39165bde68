"""What makes a run a variant: how its attention and model settings differ from its backend's defaults.

A table row is a backend with some settings changed (Table 11's ``attention.block_size=32``, Table 10's
``model.channel_mixer=ffn``). Runs are matched to rows by that difference, not by the sweep that started them:
the same configuration reached from two sweeps is one run folder, and counts in both tables. The defaults are
``conf/`` composed for the run's task, backend and scale, as ``python -m harness.run`` composes them.
``harness.run`` writes the difference into the record (``variant``) when the run starts, with the hashes that
group its seeds and its context (:func:`placement`); the report reads them there, and
``python -m harness.migrate_records`` computes them the same way, once, for records written before they existed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from attention_zoo.registry import REGISTRY
from harness.compose import CONF_DIR, compose
from harness.config import config_hash
from harness.run_record import MODEL_AXES, context_config, without_budget, without_seed

log = logging.getLogger(__name__)


class Defaults:
    """The attention and model sections each (task, backend, scale) gets by default; composed once each."""

    def __init__(self, conf_dir: str | Path = CONF_DIR):
        self.conf_dir = Path(conf_dir).resolve()
        self._cache: dict[tuple[str, str, str], dict[str, Any]] = {}

    def sections(self, task: str, backend: str, scale: str) -> dict[str, Any]:
        key = (task, backend, scale)
        if key not in self._cache:
            self._cache[key] = self._compose(task, backend, scale)
        return self._cache[key]

    def _compose(self, task: str, backend: str, scale: str) -> dict[str, Any]:
        overrides = [f"task={task}", f"attention={backend}", f"scale={scale}"]
        try:
            cfg = compose(overrides, conf_dir=self.conf_dir)
            resolved = OmegaConf.to_container(cfg, resolve=True)
            return {"attention": resolved.get("attention", {}), "model": resolved.get("model", {})}
        except Exception as err:  # a task or scale this checkout cannot compose: fall back to the backend file
            log.debug("cannot compose %s (%s); using conf/attention/%s.yaml only", overrides, err, backend)
        path = self.conf_dir / "attention" / f"{backend}.yaml"
        attention = OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {}
        return {"attention": attention, "model": None}

    def variant(self, task: str, backend: str, scale: str, config: dict[str, Any]) -> dict[str, Any]:
        """``{"attention.<knob>": value, "model.<axis>": value}`` for every setting of the resolved ``config``
        that differs from the defaults (``attention.layer_plan`` included); empty for the backend as configured
        by default."""
        defaults = self.sections(task, backend, scale)
        attention = config.get("attention", {})
        changed = {
            f"attention.{key}": value
            for key, value in attention.items()
            if key != "name" and (key not in defaults["attention"] or defaults["attention"][key] != value)
        }
        model, default_model = config.get("model", {}), defaults["model"]
        if default_model is not None:
            changed |= {
                f"model.{key}": model[key]
                for key in MODEL_AXES
                if key in model and key in default_model and model[key] != default_model[key]
            }
        return changed


def placement(task: str, backend: str, scale: str, config: dict[str, Any],
              defaults: Defaults | None = None) -> dict[str, Any]:
    """Where a run with the resolved ``config`` sits in the report, as its record states it: ``variant`` (None
    when ``conf/`` cannot be composed for it: the report then leaves the run out of the tables' rows), ``group``,
    ``context``, ``context_any_budget`` and ``preset`` (:mod:`harness.run_record`)."""
    try:
        variant = (defaults or Defaults()).variant(task, backend, scale, config)
    except Exception as err:  # a record without it is still complete
        log.warning("variant not recorded (%s: %s)", type(err).__name__, err)
        variant = None
    spec = REGISTRY.get(backend)  # a plugin's record may outlive the plugin (migrating it)
    return {"variant": variant, "preset": spec is not None and spec.preset is not None, **placement_hashes(config)}


def placement_hashes(config: dict[str, Any]) -> dict[str, str]:
    """The record's ``group``, ``context`` and ``context_any_budget`` for the resolved ``config``."""
    context = context_config(config)
    return {"group": config_hash(without_seed(config)), "context": config_hash(context),
            "context_any_budget": config_hash(without_budget(context))}
