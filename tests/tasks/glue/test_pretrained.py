"""``task.init_from`` loads a checkpoint only with its digest, and as weights only: anything else fails naming the
file and what to do."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from tasks.glue.pretrained import Pretrained, PretrainedCheckpointError, load_encoder_weights


def checkpoint(run: Path, state: object, digest: bool = True) -> Pretrained:
    path = run / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    if digest:
        path.with_name("best.pt.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    return Pretrained(run, path, {})


def weights(module: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    return {"model": {f"encoder.{k}": v for k, v in module.state_dict().items()}}


def test_a_verified_checkpoint_loads(tmp_path):
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    load_encoder_weights(target, checkpoint(tmp_path, weights(source)))
    assert torch.equal(target.weight, source.weight)


def test_a_checkpoint_without_its_digest_is_refused(tmp_path):
    pretrained = checkpoint(tmp_path, weights(nn.Linear(3, 2)), digest=False)
    with pytest.raises(PretrainedCheckpointError, match=r"best.pt has no best.pt.sha256 beside it, so it cannot be "
                                                        r"verified .*copy it again .* together with its digest"):
        load_encoder_weights(nn.Linear(3, 2), pretrained)


def test_a_checkpoint_failing_its_digest_is_refused(tmp_path):
    pretrained = checkpoint(tmp_path, weights(nn.Linear(3, 2)))
    with open(pretrained.checkpoint, "ab") as f:
        f.write(b"\0")
    with pytest.raises(PretrainedCheckpointError, match=r"best.pt does not match its best.pt.sha256"):
        load_encoder_weights(nn.Linear(3, 2), pretrained)


@pytest.mark.parametrize(("state", "reason"), [
    ({"model": argparse.Namespace(a=1)}, r"UnpicklingError: Unsupported global: GLOBAL argparse.Namespace\)"),
    (None, r"has no 'model' weights"),
])
def test_a_file_that_is_not_a_checkpoint_of_ours_fails_clearly(tmp_path, state, reason):
    pretrained = checkpoint(tmp_path, state)  # with a matching digest: the content itself is refused
    with pytest.raises(PretrainedCheckpointError, match=reason) as err:
        load_encoder_weights(nn.Linear(3, 2), pretrained)
    assert str(pretrained.checkpoint) in str(err.value) and "weights_only=False" not in str(err.value)


def test_garbage_bytes_fail_clearly(tmp_path):
    pretrained = checkpoint(tmp_path, {})
    pretrained.checkpoint.write_bytes(b"not a checkpoint")
    pretrained.checkpoint.with_name("best.pt.sha256").write_text(hashlib.sha256(b"not a checkpoint").hexdigest())
    with pytest.raises(PretrainedCheckpointError, match=r"cannot be read as a checkpoint of this project"):
        load_encoder_weights(nn.Linear(3, 2), pretrained)
