"""The recall tasks: each one's knobs (a frozen dataclass with checks) and its generator."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tasks.recall import mqar, noisy, selective_copy

Generator = Callable[[Any, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class RecallSpec:
    """``params``: the generator's knobs (``task.<knob>``; ``input_len`` the tokens the model reads);
    ``generate(params, n, rng)``: ``n`` examples as inputs and targets ``[n, input_len]``; ``source``: the
    definition followed."""

    name: str
    params: type
    generate: Generator
    source: str

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.params))


SPECS: dict[str, RecallSpec] = {
    spec.name: spec
    for spec in (
        RecallSpec("mqar", mqar.MQARParams, mqar.generate, "Zoology (Arora et al., ICLR 2024)"),
        RecallSpec("noisy", noisy.NoisyRecallParams, noisy.generate, "MAD (Poli et al., ICML 2024)"),
        RecallSpec("selective_copy", selective_copy.SelectiveCopyParams, selective_copy.generate,
                   "MAD (Poli et al., ICML 2024)"),
    )
}
# every task's knobs: the fields of RecallTaskConfig that belong to one task or another
ALL_KNOBS = tuple(dict.fromkeys(k for spec in SPECS.values() for k in spec.knobs))


def get_spec(task_name: str) -> RecallSpec:
    """The spec of ``recall/<name>``."""
    family, _, name = task_name.partition("/")
    if family != "recall" or name not in SPECS:
        raise ValueError(f"unknown recall task {task_name!r}; valid choices: {[f'recall/{n}' for n in SPECS]}")
    return SPECS[name]
