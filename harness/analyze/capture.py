"""Materialise the attention of every mixer of a model while it runs (forward pre-hooks, eval, no grad)."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from harness.analyze.attention_maps import AttentionMap, attention_map, is_attention_mixer


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


Visitor = Callable[[MixerSite, AttentionMap, torch.Tensor], None]


@contextmanager
def visiting_attention(model: nn.Module, visit: Visitor) -> Iterator[None]:
    """While active, every forward of a mixer of ``model`` calls ``visit(site, attention_map, real)``,
    where ``real [B, N]`` marks the real (unpadded) tokens. The model is put in eval mode for the duration."""
    was_training = model.training
    model.eval()

    def hook_for(site: MixerSite):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            padding_mask = args[1] if len(args) > 1 else kwargs.get("padding_mask")
            real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if padding_mask is None else ~padding_mask
            visit(site, attention_map(module, x, padding_mask), real)

        return hook

    handles = [
        module.register_forward_pre_hook(hook_for(site), with_kwargs=True) for site, module in mixer_sites(model)
    ]
    try:
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
