"""Device placement without a GPU: every backend's forward and backward on the ``meta`` device (shapes and devices
only). A tensor made on the CPU inside a kernel, a host synchronisation (``.item()``) or an autocast bound to one
device type fails here as it would on CUDA; a fresh decoding state is on the module's device. (Decoding steps
choose their fast paths from the data, a host read per step, so they run on the CPU tests only.)"""
from __future__ import annotations

import pytest
import torch

from attention_zoo import available, build_backbone
from tests.attention_zoo.cases import D_MODEL, make_for

META = torch.device("meta")


def devices(state) -> set[str]:
    found = {state.count.device.type} | {t.device.type for t in state.tensors.values()}
    for part in state.parts:
        found |= devices(part)
    return found


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("name", available())
def test_forward_backward_and_decoding_stay_on_the_modules_device(name, causal):
    module = make_for(name, {})(causal, dtype=torch.float32, device=META)
    x = torch.randn(2, 37, D_MODEL, device=META, requires_grad=True)
    mask = torch.zeros(2, 37, dtype=torch.bool, device=META)
    out = module(x, mask)
    assert out.device == META and out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.device == META
    if causal:  # every mixer decodes in causal mode
        assert devices(module.init_state(2)) == {"meta"}  # no device given: the module's


def test_a_backbones_decoding_state_is_on_its_device():
    backbone = build_backbone("transnormer_t2", {"d_model": D_MODEL, "n_layers": 2, "n_heads": 2, "causal": True})
    backbone.to(META)
    assert devices(backbone.init_state(3)) == {"meta"}
