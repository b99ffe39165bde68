"""Tasks: data, tokenisers, heads, losses and metrics. ``build(cfg)`` turns a task config into a Task.

A task name is ``<family>`` or ``<family>/<name>`` (``lm``, ``mlm``, ``glue/cola``, ``lra/listops``,
``recall/mqar``); the family picks the Task class below (imported only when used), whose ``config_class`` is the
typed schema the config is validated against.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tasks.base import IGNORE_INDEX, Batch, DataConfig, Task, TaskConfig

__all__ = ["FAMILIES", "IGNORE_INDEX", "Batch", "DataConfig", "Task", "TaskConfig", "build", "task_class"]

# family -> "module:Class"
FAMILIES: dict[str, str] = {
    "lm": "tasks.lm:LanguageModelTask",
    "mlm": "tasks.mlm:MaskedLanguageModelTask",
    "glue": "tasks.glue:GlueTask",
    "lra": "tasks.lra:LraTask",
    "recall": "tasks.recall:RecallTask",
}


def task_class(name: str) -> type[Task]:
    """The Task class for task ``name`` (``family`` or ``family/sub``)."""
    family = name.split("/", 1)[0]
    if family not in FAMILIES:
        raise ValueError(f"unknown task {name!r}; valid task families: {sorted(FAMILIES)}")
    module, _, cls = FAMILIES[family].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        raise ValueError(f"task family {family!r} is not implemented yet (no module {module})") from err


def validate(cfg: Mapping[str, Any] | TaskConfig) -> TaskConfig:
    """The task config checked against its family's schema (unknown keys and wrong types fail, named)."""
    if isinstance(cfg, TaskConfig):
        return cfg
    if isinstance(cfg, DictConfig):  # resolve now: interpolations may point outside the task (${run.root})
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    else:
        cfg = OmegaConf.create(dict(cfg))
    name = cfg.get("name", "lm")
    schema = OmegaConf.structured(task_class(name).config_class)
    return OmegaConf.to_object(OmegaConf.merge(schema, cfg))


def build(cfg: Mapping[str, Any] | TaskConfig) -> Task:
    """The task described by ``cfg`` (a mapping, a DictConfig or a TaskConfig), not yet prepared."""
    cfg = validate(cfg)
    return task_class(cfg.name)(cfg)
