"""Find a masked-LM pretraining run, check it matches the fine-tuning model, and load its encoder weights.

The checkpoint is loaded as the harness loads its own (``harness.checkpoint.load_verified``, which this layer may
not import): its ``.sha256`` must be beside it and match, and it is read with ``weights_only=True``; anything
else fails naming the file and what to do, never with a bare unpickling error.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.data.synthetic_lm import CorpusConfig

RECORD_FILE, BEST_CHECKPOINT = "record.json", "checkpoints/best.pt"

PRETRAINING_TASK = "mlm"  # the task whose runs task.init_from=auto fine-tunes


class PretrainedCheckpointError(ValueError):
    """A ``task.init_from`` checkpoint without its digest, failing it, or not a checkpoint of this project."""


def _differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ (dropout rates excepted: fine-tuning may change them)."""
    keys = sorted(k for k in set(ours) | set(theirs) if "dropout" not in k)
    return {k: (ours.get(k), theirs.get(k)) for k in keys if ours.get(k) != theirs.get(k)}


@dataclass
class Pretrained:
    """A completed masked-LM run: its folder, the checkpoint to start from and its resolved config."""

    run_dir: Path
    checkpoint: Path
    config: dict[str, Any]

    @property
    def max_len(self) -> int:
        """Positions the pretrained encoder has (the backbone raises ``model.max_len`` to ``seq_len``)."""
        return max(int(self.config["model"]["max_len"]), int(self.config["task"]["seq_len"]))

    @property
    def builtin_corpus(self) -> tuple[CorpusConfig, int] | None:
        """The built-in corpus (settings, seed) it was pretrained on, or None for real data."""
        task = self.config["task"]
        if task["data"]["source"] != "builtin":
            return None
        return CorpusConfig(**task["corpus"]), int(task["data"]["seed"])

    def mismatch(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        diff = {f"attention.{k}": v for k, v in _differences(attention, self.config["attention"]).items()}
        return diff | {f"model.{k}": v for k, v in _differences(model, self.config["model"]).items()}

    def check_compatible(self, attention: Mapping[str, Any], model: Mapping[str, Any]) -> None:
        diff = self.mismatch(attention, model)
        if diff:
            shown = ", ".join(f"{k}: this run {a!r} vs pretrained {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"task.init_from={self.run_dir} was pretrained with another backend or size ({shown}); "
                             "fine-tune with the pretraining run's attention and model settings")

    def describe(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "checkpoint": str(self.checkpoint),
                "backend": self.config["attention"]["name"]}


def _load_run(run_dir: Path, checkpoint: Path | None = None) -> Pretrained:
    record_file = run_dir / RECORD_FILE
    if not record_file.is_file():
        raise FileNotFoundError(f"task.init_from: {run_dir} is not a run folder (no {RECORD_FILE})")
    record = json.loads(record_file.read_text())
    if record.get("task") != "mlm":
        raise ValueError(f"task.init_from: {run_dir} is a {record.get('task')!r} run, not a masked-LM (mlm) run")
    if record.get("status") != "completed" and checkpoint is None:
        raise ValueError(f"task.init_from: the masked-LM run {run_dir} has status {record.get('status')!r}, not "
                         "completed; finish it or give one of its checkpoints explicitly")
    checkpoint = checkpoint or run_dir / BEST_CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(f"task.init_from: {checkpoint} does not exist")
    return Pretrained(run_dir, checkpoint, record["config"])


def find_pretrained(init_from: str) -> Pretrained:
    """``init_from``: a masked-LM run folder or a checkpoint file inside one (``<run>/checkpoints/*.pt``)."""
    path = Path(init_from).expanduser()
    if path.is_file():
        return _load_run(path.parent.parent, path)
    if path.is_dir():
        return _load_run(path)
    raise FileNotFoundError(f"task.init_from={init_from!r}: no such run folder or checkpoint file (or use 'auto')")


def find_auto(root: str | Path, attention: Mapping[str, Any], model: Mapping[str, Any],
              seed: int | None = None) -> Pretrained:
    """The newest completed masked-LM run under ``<root>/mlm/<backend>/`` with these attention and model
    settings (dropout rates aside), one with training seed ``seed`` first if there is one."""
    folder = Path(root) / PRETRAINING_TASK / str(attention["name"])
    candidates = []
    for record_file in sorted(folder.glob(f"*/*/{RECORD_FILE}")):
        record = json.loads(record_file.read_text())
        if record.get("status") != "completed" or not (record_file.parent / BEST_CHECKPOINT).is_file():
            continue
        run = Pretrained(record_file.parent, record_file.parent / BEST_CHECKPOINT, record["config"])
        if not run.mismatch(attention, model):
            candidates.append((record.get("config", {}).get("seed") == seed, record.get("finished", ""), run))
    if not candidates:
        raise FileNotFoundError(
            f"task.init_from=auto: no completed masked-LM run under {folder} with attention={dict(attention)} and "
            f"these model settings; pretrain one first (python -m harness.run task=mlm attention={attention['name']} "
            "scale=<the same scale>) or give task.init_from=<run folder>"
        )
    return max(candidates, key=lambda c: c[:2])[2]


def _reason(err: Exception) -> str:
    """The gist of a load error: torch's weights-only refusal is a page of advice (to load unsafely) around
    one line that says what was refused."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    refused = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", text)
    first = refused.group(1) if refused else (text.strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, verified against ``<path>.sha256`` and read with ``weights_only=True``."""
    digest_file = path.with_name(path.name + ".sha256")
    again = "copy it again from the pretraining run's checkpoints/ folder, together with its digest, or pretrain again"
    if not digest_file.is_file():
        raise PretrainedCheckpointError(
            f"task.init_from: {path} has no {digest_file.name} beside it, so it cannot be verified (an unfinished "
            f"write, or the file was copied without it); expected the digest the run wrote with it: {again}"
        )
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != digest_file.read_text().strip():
        raise PretrainedCheckpointError(
            f"task.init_from: {path} does not match its {digest_file.name} (truncated or corrupt); {again}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, a zip error...: the file is not one of ours
        raise PretrainedCheckpointError(
            f"task.init_from: {path} cannot be read as a checkpoint of this project ({_reason(err)}); expected a "
            "checkpoint written by a masked-LM run (python -m harness.run task=mlm), which holds only tensors "
            "and plain containers and loads with weights_only=True"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise PretrainedCheckpointError(
            f"task.init_from: {path} has no 'model' weights; expected a checkpoint written by a masked-LM run"
        )
    return state


def load_encoder_weights(encoder: nn.Module, pretrained: Pretrained) -> None:
    """Copy the checkpoint's ``encoder.*`` weights into ``encoder`` (every one must fit)."""
    path = pretrained.checkpoint
    state = load_checkpoint(path)["model"]
    weights = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"task.init_from: the encoder weights of {path} do not fit this model: {err}") from None
