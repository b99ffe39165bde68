"""What a diagnostic runs on: a model, the batches to feed it, a label and where its outputs go."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

import tasks
from attention_zoo import build_backbone
from harness.checkpoint import CheckpointStore
from harness.config import validate
from harness.run_record import read_record


@dataclass
class AnalysisSource:
    """``forwards()`` yields one callable per batch; calling it runs ``model`` on that batch."""

    label: str
    model: nn.Module
    forwards: Callable[[], Iterator[Callable[[], object]]]
    out_dir: Path | None = None
    backend: str = ""  # a trained run's backend and seed (the report pairs seeds across backends)
    seed: int | None = None


def untrained_source(
    attention: str,
    *,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    causal: bool = True,
    length: int = 256,
    batch_size: int = 2,
    n_batches: int = 1,
    seed: int = 0,
) -> AnalysisSource:
    """A freshly initialised backbone fed Gaussian embeddings: checks the machinery, not the paper's claim
    (which is about trained models; use a run folder for that)."""
    torch.manual_seed(seed)
    backbone = build_backbone(
        attention, dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, causal=causal, max_len=length)
    )

    def forwards():
        generator = torch.Generator().manual_seed(seed)
        for _ in range(n_batches):
            x = torch.randn(batch_size, length, d_model, generator=generator)
            yield lambda x=x: backbone(x)

    return AnalysisSource(f"{attention} (untrained)", backbone, forwards, backend=attention)


ANALYSIS_FOLDER = "analysis"


def run_source(
    run_dir: str | Path, split: str | None = None, batch_size: int = 4, n_batches: int = 2
) -> AnalysisSource:
    """A finished run: its task and model rebuilt from the record's config, the best checkpoint loaded,
    fed the first ``n_batches`` batches of ``split`` (the validation split by default). Outputs go to
    ``<run_dir>/analysis/``."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record is None or "config" not in record:
        raise FileNotFoundError(f"{run_dir} holds no readable run record (record.json with its config)")
    cfg = validate(record["config"])
    task = tasks.build(cfg.task)
    task.prepare()
    model = task.build_model(cfg.attention.as_mapping(), asdict(cfg.model))
    best = CheckpointStore(run_dir / "checkpoints").load_best()
    model.load_state_dict(best["model"])
    split = split or task.splits[0]
    if split not in (*task.splits, "train"):
        raise ValueError(f"unknown split {split!r} for task {cfg.task.name}; valid: {['train', *task.splits]}")

    def forwards():
        for index, batch in enumerate(task.eval_batches(split, batch_size)):
            if index == n_batches:
                return
            yield lambda batch=batch: model(**batch.inputs)

    label = f"{record.get('backend', cfg.attention.name)}"
    return AnalysisSource(label, model, forwards, run_dir / ANALYSIS_FOLDER, backend=label,
                          seed=record.get("seed", cfg.seed))
