"""Materialise the attention of every mixer of a model while it runs (forward pre-hooks, eval, no grad)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from harness.analyze.attention_maps import AttentionMap, attention_map
from harness.mixer_sites import MixerSite, mixer_sites

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
