"""No host reads on the training path (each one waits for the GPU): the masked batch norm weights instead of
indexing, Performer counts its forwards on the host, fixed decays live on the module's device. Checked on the
``meta`` device, where any read of a tensor's value fails, and against the earlier forms in float64."""
from __future__ import annotations

import copy

import torch

from attention_zoo import build_mixer
from attention_zoo.norms import MaskedBatchNorm

META = torch.device("meta")


def indexed_batch_norm(module: MaskedBatchNorm, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """The form it replaces: BatchNorm1d on the real tokens picked out by a boolean index."""
    out = torch.zeros_like(x)
    out[~padding_mask] = module.norm(x[~padding_mask])
    return out


def test_masked_batch_norm_equals_batch_norm_on_the_real_tokens_without_indexing():
    torch.manual_seed(0)
    ours = MaskedBatchNorm(8).double()
    ours.norm.weight.data.uniform_()
    ours.norm.bias.data.uniform_()
    theirs = copy.deepcopy(ours)
    for _ in range(3):  # training: outputs, gradients and the running statistics
        x = torch.randn(3, 11, 8, dtype=torch.float64, requires_grad=True)
        x_copy = x.detach().clone().requires_grad_(True)
        mask = torch.rand(3, 11) < 0.3
        grad = torch.randn(3, 11, 8, dtype=torch.float64)
        ours(x, mask).backward(grad)
        indexed_batch_norm(theirs, x_copy, mask).backward(grad)
        torch.testing.assert_close(x.grad, x_copy.grad, rtol=1e-12, atol=1e-12)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(ours.norm, name), getattr(theirs.norm, name), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.norm.weight.grad, theirs.norm.weight.grad, rtol=1e-12, atol=1e-12)
    ours.eval(), theirs.eval()
    x, mask = torch.randn(3, 11, 8, dtype=torch.float64), torch.rand(3, 11) < 0.3
    torch.testing.assert_close(ours(x, mask), indexed_batch_norm(theirs, x, mask), rtol=1e-12, atol=1e-12)
    meta = MaskedBatchNorm(8).to(META)  # training on meta: an index or a read of the mask would fail here
    assert meta(torch.randn(3, 11, 8, device=META), torch.zeros(3, 11, dtype=torch.bool, device=META)).is_meta


def test_performer_decides_its_redraws_without_reading_the_device_and_keeps_its_count():
    mixer = build_mixer("performer", 16, 2, True, redraw_interval=3, n_features=8).train()
    x = torch.randn(1, 5, 16)
    projections = []
    for _ in range(7):
        mixer(x, None)
        projections.append(mixer.projection.clone())
    redrawn = [not torch.equal(a, b) for a, b in zip(projections, projections[1:])]
    assert redrawn == [False, False, True, False, False, True]  # every 3 forwards, as before
    assert int(mixer.forwards_since_redraw) == 1  # the buffer a checkpoint keeps
    restored = build_mixer("performer", 16, 2, True, redraw_interval=3, n_features=8).train()
    restored.load_state_dict(mixer.state_dict())
    restored(x, None), restored(x, None)
    before = restored.projection.clone()
    restored(x, None)  # the count went on from the checkpoint's 1: this third forward redraws
    assert not torch.equal(before, restored.projection)
    on_meta = build_mixer("performer", 16, 2, True, redraw_interval=3, n_features=8).to(META).train()
    on_meta._forwards_since_redraw = 0  # as after its first forward on a real device
    for _ in range(4):
        on_meta(torch.randn(1, 5, 16, device=META), None)


def test_fixed_decays_move_with_the_module():
    for name in ("retnet", "lightning"):
        mixer = build_mixer(name, 16, 2, True).to(META)
        assert mixer.fixed_log_decays.is_meta and "fixed_log_decays" not in mixer.state_dict()
