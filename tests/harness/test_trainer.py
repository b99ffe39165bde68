"""Trainer details: gradient accumulation weighs every target the same; bf16 autocast runs; lr follows the
schedule."""
from __future__ import annotations

import json

import pytest
import torch

import tasks
from harness.config import TrainerConfig
from harness.schedules import learning_rate
from harness.trainer import Trainer, split_batch

MODEL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    t = tasks.build({"name": "lm", "seq_len": 16, "data": {"cache_dir": str(tmp_path_factory.mktemp("cache"))},
                     "corpus": {"train_tokens": 4000, "valid_tokens": 600, "test_tokens": 600, "n_nouns": 40,
                                "n_verbs": 10, "n_adjectives": 10, "n_entities": 20}})
    t.prepare()
    return t


class GradientCapture:
    """Keeps a copy of the gradients of every update (the trainer's callback hook)."""

    def __init__(self):
        self.grads = []

    def on_gradients(self, model, step):
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    def on_fit_end(self):
        pass


def train(task, run_dir, callbacks=(), **trainer):
    torch.manual_seed(0)
    model = task.build_model({"name": "transnormer_t2", "block_size": 8, "chunk_size": 8}, MODEL)
    cfg = TrainerConfig(**{"max_steps": 3, "eval_every": 3, "checkpoint_every": 3, "progress": False,
                           "lr": 1e-2, "warmup_steps": 0, **trainer})
    result = Trainer(cfg, run_dir, seed=0, callbacks=callbacks).fit(model, task)
    return model, result


def test_accumulated_micro_batches_equal_one_large_batch(task, tmp_path):
    one, four = GradientCapture(), GradientCapture()
    train(task, tmp_path / "one", [one], max_steps=1, global_batch_size=8, micro_batch_size=8)
    train(task, tmp_path / "four", [four], max_steps=1, global_batch_size=8, micro_batch_size=2)
    (a,), (b,) = one.grads, four.grads
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name


def test_bf16_autocast_trains(task, tmp_path):
    _, result = train(task, tmp_path, precision="bf16", global_batch_size=4, micro_batch_size=4)
    assert 1 < result.metrics["test/perplexity"] < 1e4


def test_compiled_training_gives_the_uncompiled_gradients(task, tmp_path):
    """trainer.compile=true: torch.compile on the training forward; the first update's gradients are the same
    up to the fusions' rounding."""
    plain, compiled = GradientCapture(), GradientCapture()
    train(task, tmp_path / "plain", [plain], max_steps=1, global_batch_size=4, micro_batch_size=4)
    train(task, tmp_path / "compiled", [compiled], max_steps=1, global_batch_size=4, micro_batch_size=4,
          compile=True)
    (a,), (b,) = plain.grads, compiled.grads
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-3, atol=1e-5), name


def test_learning_rate_follows_the_schedule(task, tmp_path):
    from harness.config import LoggerConfig
    from harness.metrics_log import MetricsLogger

    cfg = {"schedule": "cosine", "warmup_steps": 2, "max_steps": 5, "log_every": 1, "lr": 1e-3}
    logger = MetricsLogger(tmp_path, LoggerConfig(wandb=False), run_id="x", name="x", config={})
    torch.manual_seed(0)
    model = task.build_model({"name": "vanilla"}, MODEL)
    trainer_cfg = TrainerConfig(**cfg, eval_every=5, checkpoint_every=5, progress=False, global_batch_size=4,
                                micro_batch_size=4)
    Trainer(trainer_cfg, tmp_path, seed=0, logger=logger).fit(model, task)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "train/lr" in x]
    assert [x["train/lr"] for x in lines] == [learning_rate(trainer_cfg, s) for s in range(5)]


@pytest.mark.parametrize("global_batch, micro, processes, expected", [
    (8, 4, 1, (4, 2)), (8, 4, 2, (4, 1)), (8, 8, 2, (4, 1)), (32, 32, 8, (4, 1)), (48, 16, 2, (12, 2)),
    (12, 5, 1, (4, 3)),
])
def test_the_micro_batch_is_derived_so_that_no_process_count_fails_on_divisibility(global_batch, micro, processes,
                                                                                     expected):
    assert split_batch(global_batch, micro, processes) == expected


def test_a_global_batch_that_processes_cannot_share_says_which_counts_can():
    with pytest.raises(ValueError, match=r"cannot be shared evenly by 3 processes; use a process count that divides"):
        split_batch(8, 4, 3)
