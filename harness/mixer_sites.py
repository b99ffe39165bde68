"""Where a model's attention mixers sit (their module path, layer, class and causality): what the run's gradient
log and the diagnostics both walk."""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn


def is_attention_mixer(module: nn.Module) -> bool:
    """A mixer whose attention can be materialised: it has ``attention_map(x, key_valid)``."""
    return callable(getattr(module, "attention_map", None))


@dataclass(frozen=True)
class MixerSite:
    """Where a mixer sits: its module path, its layer (``blocks.<i>``), its class name, its causality."""

    path: str
    layer: int
    mixer: str
    causal: bool


def mixer_sites(model: nn.Module) -> list[tuple[MixerSite, nn.Module]]:
    """Every mixer whose attention can be materialised, in module order."""
    sites = []
    for path, module in model.named_modules():
        if is_attention_mixer(module):
            found = re.search(r"blocks\.(\d+)\.", path + ".")
            layer = int(found.group(1)) if found else len(sites)
            sites.append((MixerSite(path, layer, type(module).__name__, bool(module.causal)), module))
    if not sites:
        raise ValueError(f"{type(model).__name__} holds no attention mixer that can be materialised")
    return sites
