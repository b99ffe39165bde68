"""The trainer: AdamW, a schedule, gradient accumulation, evaluation, best-on-validation, checkpoints, resume.

``Trainer(cfg, run_dir, seed).fit(model, task)`` trains for ``cfg.max_steps`` updates, evaluates on the
validation split every ``eval_every`` updates (and at the end), keeps the best checkpoint by the task's primary
metric, then evaluates that checkpoint once on the test split. A checkpoint every ``checkpoint_every``
updates holds everything needed to continue bit-for-bit: weights, optimiser, update count, random state and
the best-so-far; starting the same run again resumes from it (the data order is a function of the update
count, see ``Task.train_batches``).

Under ``torchrun`` (``rank``/``world_size`` > 1) the model is wrapped in DistributedDataParallel: each process
takes its slice of every global batch, gradients are averaged across processes, the loss is normalised by the
global number of targets (so P processes train the same model as one process with the same global batch),
evaluation metrics are reduced over all processes, and only rank 0 logs and writes checkpoints.
"""
from __future__ import annotations

import contextlib
import logging
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from harness import distributed
from harness.allocator import keep_freed_memory
from harness.checkpoint import CheckpointError, CheckpointStore
from harness.config import TrainerConfig
from harness.metrics_log import MetricsLogger
from harness.schedules import learning_rate
from tasks.base import Task

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient: the run stops and is marked failed."""


@dataclass
class FitResult:
    metrics: dict[str, float]  # valid/<name> of the best checkpoint, test/<name>, best_step
    steps_per_sec: float
    tokens_per_sec: float
    train_seconds: float
    eval_seconds: float
    peak_memory_mb: float
    memory_kind: str
    resumed_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())  # under torchrun: this process's GPU


class Trainer:
    def __init__(self, cfg: TrainerConfig, run_dir: str | Path, seed: int, logger: MetricsLogger | None = None,
                 resume: bool = True, rank: int = 0, world_size: int = 1, callbacks: Sequence[Any] = ()):
        self.cfg, self.seed, self.logger, self.resume = cfg, seed, logger, resume
        # callbacks: objects with on_gradients(model, step) (gradients of update `step`, before clipping)
        # and on_fit_end(); e.g. harness.analyze.gradient_deviation.GradientRecorder
        self.callbacks = list(callbacks)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.run_dir = Path(run_dir)
        self.store = CheckpointStore(self.run_dir / "checkpoints", keep=cfg.keep_checkpoints)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # glibc keeps freed activations (harness/allocator.py): up to 2.8x faster steps
        micro_per_update = cfg.micro_batch_size * world_size
        if cfg.global_batch_size % micro_per_update:
            raise ValueError(
                f"trainer.global_batch_size={cfg.global_batch_size} is not a multiple of micro_batch_size x "
                f"processes = {cfg.micro_batch_size} x {world_size}"
            )
        self.accumulation = cfg.global_batch_size // micro_per_update

    # ----------------------------------------------------------------------------------------- pieces
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _log(self, metrics: dict[str, Any], step: int) -> None:
        if self.logger is not None:
            self.logger.log(metrics, step)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, task: Task, split: str) -> dict[str, float]:
        """The task's metrics over every example of ``split``."""
        model.eval()
        metrics = task.metrics().to(self.device)
        batches = task.eval_batches(split, self.cfg.eval_batch_size, self.rank, self.world_size)
        total = task.eval_steps(split, self.cfg.eval_batch_size, self.world_size)
        for batch in tqdm(batches, total=total, desc=split, leave=False, disable=not self._progress()):
            batch = batch.to(self.device)
            with self.autocast():
                outputs = model(**batch.inputs)
            metrics.update(*task.metric_inputs(outputs, batch))
        return {name: float(value) for name, value in metrics.compute().items()}

    def _progress(self) -> bool:
        return self.cfg.progress and self.rank == 0

    def _is_better(self, task: Task, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if task.primary_mode == "min" else value > best

    def _state(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, best: dict) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
                "best": best}

    def _restore(self, state: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def _validate(self, model: nn.Module, task: Task, step: int, best: dict) -> tuple[dict, float]:
        """Evaluate on validation; keep the weights if they are the best so far. Returns the new ``best`` and
        this evaluation's primary metric."""
        metrics = self.evaluate(model, task, task.splits[0])
        value = metrics[task.primary_metric]
        if self._is_better(task, value, best["value"]):
            best = {"value": value, "step": step, "metrics": metrics}
            if self.is_main:
                self.store.save_best({"step": step, "model": model.state_dict(), "metrics": metrics})
        self._log({f"{task.splits[0]}/{k}": v for k, v in metrics.items()} | {"best_step": best["step"]}, step)
        return best, value

    def _test_best(self, model: nn.Module, task: Task, step: int) -> dict[str, float]:
        """Load the best checkpoint and evaluate it once on test; its validation metrics come with it."""
        valid_name, test_name = task.splits
        distributed.barrier()  # rank 0 has finished writing the best checkpoint
        try:
            best = self.store.load_best()
            model.load_state_dict(best["model"])
        except CheckpointError as err:
            log.warning("the best checkpoint is unusable (%s); evaluating the final weights instead", err)
            best = {"step": step, "metrics": self.evaluate(model, task, valid_name)}
        test = {f"{test_name}/{k}": v for k, v in self.evaluate(model, task, test_name).items()}
        self._log(test, step)
        return {f"{valid_name}/{k}": v for k, v in best["metrics"].items()} | test | {"best_step": best["step"]}

    # -------------------------------------------------------------------------------------------- fit
    def fit(self, model: nn.Module, task: Task) -> FitResult:
        cfg = self.cfg
        model.to(self.device)
        train_model = model
        if self.world_size > 1:  # gradients averaged across processes during backward
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=device_ids)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                      weight_decay=cfg.weight_decay)
        step, best = 0, {"value": None, "step": None, "metrics": {}}
        state = self.store.load_latest() if self.resume else None
        resumed_from = None
        if state is not None:
            self._restore(state, model, optimizer)
            step, best, resumed_from = state["step"], state["best"], state["step"]
        if self.logger is not None:
            self.logger.resume_from(step)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        batches = task.train_batches(cfg.micro_batch_size, self.seed, start=step * self.accumulation,
                                     rank=self.rank, world_size=self.world_size)
        train_seconds = eval_seconds = 0.0
        steps_done = tokens_done = 0
        window = {"loss": 0.0, "targets": 0, "tokens": 0, "seconds": 0.0, "steps": 0}
        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", dynamic_ncols=True, disable=not self._progress())
        while step < cfg.max_steps:
            started = time.perf_counter()
            lr = learning_rate(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, n_targets, n_tokens, grad_norm = self._update(train_model, task, optimizer, batches, step)
            step += 1
            elapsed = time.perf_counter() - started
            train_seconds += elapsed
            steps_done += 1
            tokens_done += n_tokens
            for key, value in zip(("loss", "targets", "tokens", "seconds", "steps"),
                                  (loss_sum, n_targets, n_tokens, elapsed, 1)):
                window[key] += value
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                train_loss = window["loss"] / window["targets"]
                self._log({"train/loss": train_loss, "train/lr": lr, "train/grad_norm": grad_norm,
                           "train/steps_per_sec": window["steps"] / window["seconds"],
                           "train/tokens_per_sec": window["tokens"] / window["seconds"]}, step)
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}")
                window = dict.fromkeys(window, 0)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                started = time.perf_counter()
                best, value = self._validate(model, task, step, best)
                eval_seconds += time.perf_counter() - started
                bar.set_postfix({task.primary_metric: f"{value:.4g}"})
            if (step % cfg.checkpoint_every == 0 or step == cfg.max_steps) and self.is_main:
                self.store.save(step, self._state(step, model, optimizer, best))
        bar.close()
        for callback in self.callbacks if self.is_main else ():
            callback.on_fit_end()

        started = time.perf_counter()
        metrics = self._test_best(model, task, step)
        eval_seconds += time.perf_counter() - started
        peak, kind = peak_memory_mb(self.device)
        return FitResult(
            metrics=metrics,
            steps_per_sec=steps_done / train_seconds if train_seconds else 0.0,
            tokens_per_sec=tokens_done / train_seconds if train_seconds else 0.0,
            train_seconds=train_seconds, eval_seconds=eval_seconds, peak_memory_mb=peak, memory_kind=kind,
            resumed_from=resumed_from,
        )

    def _update(self, model, task, optimizer, batches, step) -> tuple[float, int, int, float]:
        """One optimiser update over ``accumulation`` micro-batches on every process; every target weighs the
        same. Returns the loss summed over all targets, the global target and token counts, the gradient norm."""
        micro = [next(batches) for _ in range(self.accumulation)]
        counts = [sum(b.n_targets for b in micro), sum(b.n_tokens for b in micro)]
        local_counts = torch.tensor(counts, device=self.device)  # on the device: NCCL reduces CUDA tensors only
        n_targets, n_tokens = (int(c) for c in distributed.all_reduce_sum(local_counts))
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for index, batch in enumerate(micro):
            batch = batch.to(self.device)
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if last or self.world_size == 1 else model.no_sync()
            with sync:
                with self.autocast():
                    outputs = model(**batch.inputs)
                loss = task.loss(outputs, batch)
                # DistributedDataParallel averages gradients over processes: times world_size, they sum
                (loss / n_targets * self.world_size).backward()
            loss_sum += loss.detach().float()
        loss_value = float(distributed.all_reduce_sum(loss_sum))
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the training loss is {loss_value} at update {step + 1}; stopping. Lower trainer.lr, set "
                "trainer.clip_norm, or use trainer.precision=fp32"
            )
        for callback in self.callbacks if self.is_main else ():
            callback.on_gradients(getattr(model, "module", model), step + 1)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.clip_norm or math.inf))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(f"the gradient norm is {grad_norm} at update {step + 1}; stopping")
        optimizer.step()
        return loss_value, n_targets, n_tokens, grad_norm


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory: CUDA allocator peak on a GPU, the process's peak resident set size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"
