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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from harness import distributed, stop
from harness.allocator import keep_freed_memory
from harness.batch_statistics import replayed_across_processes, tracked_norms
from harness.checkpoint import CheckpointError, CheckpointStore, load_verified
from harness.config import TrainerConfig
from harness.metrics_log import MetricsLogger
from harness.run_folder import Repairs
from harness.schedules import learning_rate
from harness.stop import RunInterrupted
from tasks.base import Task
from zoo_io.faults import fault_point

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
    segments: int = 1  # processes that trained this run: 1 + the number of resumes; the figures above sum them
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())  # under torchrun: this process's GPU


class Trainer:
    def __init__(self, cfg: TrainerConfig, run_dir: str | Path, seed: int, logger: MetricsLogger | None = None,
                 resume: bool = True, rank: int = 0, world_size: int = 1, callbacks: Sequence[Any] = (),
                 repairs: Repairs | None = None, on_update: Callable[[], None] | None = None,
                 segment_started: float | None = None):
        self.cfg, self.seed, self.logger, self.resume = cfg, seed, logger, resume
        # segment_started: time.perf_counter() when this process began its segment of the run (data preparation
        # included); checkpoints carry the wall time spent so far, so that a resumed run's record states all of it
        self.segment_started = time.perf_counter() if segment_started is None else segment_started
        self.earlier_wall_seconds = 0.0  # set by a resume: the segments before this one, each to its last checkpoint
        self._tracked_norms: list | None = None  # the model's batch norms (found at the first update)
        # on_update(): called on rank 0 after every update, e.g. RunLock.verify (raises to stop the run)
        self.on_update = on_update if on_update is not None and rank == 0 else (lambda: None)
        self.repairs = repairs if repairs is not None else Repairs()
        # callbacks: objects with on_gradients(model, step) (gradients of update `step`, before clipping)
        # and on_fit_end(); e.g. harness.gradient_log.GradientRecorder
        self.callbacks = list(callbacks)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.run_dir = Path(run_dir)
        self.store = CheckpointStore(self.run_dir / "checkpoints", keep=cfg.keep_checkpoints, repairs=self.repairs,
                                     writable=self.is_main)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # glibc keeps freed activations (harness/allocator.py): up to 2.8x faster steps
        self.micro_batch_size, self.accumulation = split_batch(cfg.global_batch_size, cfg.micro_batch_size,
                                                               world_size)
        if self.micro_batch_size != cfg.micro_batch_size and self.is_main:
            log.info("micro-batch %d per process (trainer.micro_batch_size=%d does not divide the %d examples of "
                     "each of %d processes), %d accumulation step(s)", self.micro_batch_size, cfg.micro_batch_size,
                     cfg.global_batch_size // world_size, world_size, self.accumulation)

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
            fault_point("evaluate", split)
        return {name: float(value) for name, value in metrics.compute().items()}

    def _progress(self) -> bool:
        return self.cfg.progress and self.rank == 0

    def _is_better(self, task: Task, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if task.primary_mode == "min" else value > best

    def _state(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, best: dict,
               progress: dict) -> dict:
        """Everything a resume needs to continue as if never stopped, the run's bookkeeping included: its
        metric lines so far, its summed speed figures and its repairs."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        progress["peak_memory_mb"] = max(progress["peak_memory_mb"], peak_memory_mb(self.device)[0])
        return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
                "best": best, "progress": dict(progress), "repairs": list(self.repairs.items),
                "metrics_lines": list(self.logger.lines) if self.logger is not None else []}

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

    def _load_best(self, best_step: int | None) -> dict | None:
        """The best checkpoint; if it is damaged or from another step, the step checkpoint of the best step
        where one is kept; else None (the caller tests the final weights). Each fallback is a repair."""
        try:
            best = self.store.load_best()
            if best_step is None or best["step"] == best_step:
                return best
            problem = f"best.pt holds step {best['step']}, the run's best is step {best_step}"
        except CheckpointError as err:
            problem = f"the best checkpoint is unusable: {err}"
        try:
            state = load_verified(self.store.path(best_step)) if best_step is not None else None
        except CheckpointError:
            state = None
        if state is not None:
            self.repairs.add(problem, self.store.best_path, f"tested the step checkpoint of step {best_step}")
            return {"step": best_step, "model": state["model"], "metrics": state["best"]["metrics"]}
        self.repairs.add(problem, self.store.best_path, "evaluating the final weights instead")
        return None

    def _test_best(self, model: nn.Module, task: Task, step: int, best_step: int | None) -> dict[str, float]:
        """Load the best checkpoint and evaluate it once on test; its validation metrics come with it."""
        valid_name, test_name = task.splits
        distributed.barrier()  # rank 0 has finished writing the best checkpoint
        best = self._load_best(best_step)
        if best is not None:
            model.load_state_dict(best["model"])
        else:
            best = {"step": step, "metrics": self.evaluate(model, task, valid_name)}
        test = {f"{test_name}/{k}": v for k, v in self.evaluate(model, task, test_name).items()}
        self._log(test, step)
        return {f"{valid_name}/{k}": v for k, v in best["metrics"].items()} | test | {"best_step": best["step"]}

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict, dict, int | None]:
        """Restore the newest trustworthy checkpoint (or start afresh) and make the metrics file match it.
        Returns the update count, the best-so-far, the run's summed figures and the step resumed from."""
        step, best, state = 0, {"value": None, "step": None, "metrics": {}}, None
        progress = {"train_seconds": 0.0, "eval_seconds": 0.0, "steps": 0, "tokens": 0, "peak_memory_mb": 0.0,
                    "segments": 1}
        if not self.resume:
            self.store.discard_all("run.resume=false")
        else:
            state = self.store.load_latest()
        if state is not None:
            self._restore(state, model, optimizer)
            step, best = state["step"], state["best"]
            saved = state.get("progress", progress)
            progress = saved | {"segments": saved.get("segments", 1) + 1}
            # checkpoints written before the wall time was kept: their summed training and evaluation, its floor
            self.earlier_wall_seconds = float(saved.get("wall_seconds", saved.get("train_seconds", 0.0)
                                                        + saved.get("eval_seconds", 0.0)))
            self.repairs.merge(state.get("repairs", []))
        if self.logger is not None:
            dropped = self.logger.resume(step, state.get("metrics_lines") if state else None)
            if state is not None:
                self.repairs.add(f"resumed at update {step} (segment {progress['segments']})",
                                 self.store.path(step), f"dropped {dropped} metric line(s) logged after that "
                                 "checkpoint; the updates after it are redone", resumed_from=step,
                                 dropped_metric_lines=dropped)
        return step, best, progress, (step if state is not None else None)

    @staticmethod
    def _new_window() -> dict[str, float]:
        """The sums behind the next train log line (a checkpoint between two lines keeps them)."""
        return {"loss": 0.0, "targets": 0, "tokens": 0, "seconds": 0.0, "steps": 0}

    # -------------------------------------------------------------------------------------------- fit
    def fit(self, model: nn.Module, task: Task) -> FitResult:
        cfg = self.cfg
        model.to(self.device)
        train_model = model
        if self.world_size > 1:  # gradients averaged across processes during backward
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers are not copied from rank 0: batch-norm statistics are replayed (harness/batch_statistics.py)
            train_model = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        if cfg.compile:  # the training forward only: evaluation's batch shapes differ and run once per eval
            train_model = torch.compile(train_model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                      weight_decay=cfg.weight_decay)
        step, best, progress, resumed_from = self._resume(model, optimizer)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        batches = task.train_batches(self.micro_batch_size, self.seed, start=step * self.accumulation,
                                     rank=self.rank, world_size=self.world_size)
        window = progress.pop("window", None) or self._new_window()
        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", dynamic_ncols=True, disable=not self._progress())
        while step < cfg.max_steps:
            started = time.perf_counter()
            lr = learning_rate(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, n_targets, n_tokens, grad_norm, stop_votes = self._update(train_model, task, optimizer,
                                                                                batches, step)
            step += 1
            self.on_update()
            fault_point("update", str(step))
            elapsed = time.perf_counter() - started
            progress["train_seconds"] += elapsed
            progress["steps"] += 1
            progress["tokens"] += n_tokens
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
                window = self._new_window()
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                started = time.perf_counter()
                best, value = self._validate(model, task, step, best)
                progress["eval_seconds"] += time.perf_counter() - started
                bar.set_postfix({task.primary_metric: f"{value:.4g}"})
            # processes vote before each update (all stop at the same boundary); one process stops at once
            stopping = stop_votes > 0 or (self.world_size == 1 and stop.requested() is not None)
            checkpoint_due = step % cfg.checkpoint_every == 0 or step == cfg.max_steps
            if (checkpoint_due or stopping) and self.is_main:
                wall = self.earlier_wall_seconds + time.perf_counter() - self.segment_started
                self.store.save(step, self._state(step, model, optimizer, best,
                                                  progress | {"window": window, "wall_seconds": wall}))
            if stopping and step < cfg.max_steps:
                distributed.barrier()  # rank 0's checkpoint is complete before any process exits
                bar.close()
                raise RunInterrupted(f"{stop.requested() or 'a stop signal on another process'} received: "
                                     f"checkpointed at update {step} of {cfg.max_steps}; run the same command "
                                     "again to resume")
        bar.close()
        for callback in self.callbacks if self.is_main else ():
            callback.on_fit_end()

        started = time.perf_counter()
        metrics = self._test_best(model, task, step, best["step"])
        progress["eval_seconds"] += time.perf_counter() - started
        peak, kind = peak_memory_mb(self.device)
        train_seconds = progress["train_seconds"]
        return FitResult(
            metrics=metrics,
            steps_per_sec=progress["steps"] / train_seconds if train_seconds else 0.0,
            tokens_per_sec=progress["tokens"] / train_seconds if train_seconds else 0.0,
            train_seconds=train_seconds, eval_seconds=progress["eval_seconds"],
            peak_memory_mb=max(peak, progress["peak_memory_mb"]), memory_kind=kind, resumed_from=resumed_from,
            segments=progress["segments"],
        )

    def _update(self, model, task, optimizer, batches, step) -> tuple[float, int, int, float, int]:
        """One optimiser update over ``accumulation`` micro-batches on every process; every target weighs the
        same. Returns the loss summed over all targets, the global target and token counts, the gradient norm
        and how many processes were asked to stop (reduced with the counts, so all processes agree on it)."""
        micro = [next(batches) for _ in range(self.accumulation)]
        counts = [sum(b.n_targets for b in micro), sum(b.n_tokens for b in micro), int(stop.requested() is not None)]
        local_counts = torch.tensor(counts, device=self.device)  # on the device: NCCL reduces CUDA tensors only
        n_targets, n_tokens, stop_votes = (int(c) for c in distributed.all_reduce_sum(local_counts))
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with replayed_across_processes(self._norms(model)):
            loss_sum = self._forward_backward(model, task, micro, n_targets)
        loss_value = float(distributed.all_reduce_sum(loss_sum))
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the training loss is {loss_value} at update {step + 1}; stopping. Lower trainer.lr, set "
                "trainer.clip_norm, or use trainer.precision=fp32"
            )
        for callback in self.callbacks if self.is_main else ():
            callback.on_gradients(plain_module(model), step + 1)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.clip_norm or math.inf))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(f"the gradient norm is {grad_norm} at update {step + 1}; stopping")
        optimizer.step()
        return loss_value, n_targets, n_tokens, grad_norm, stop_votes


    def _forward_backward(self, model, task, micro, n_targets: int) -> torch.Tensor:
        """The update's micro-batches through the model, gradients accumulated; the summed loss."""
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
        return loss_sum

    def _norms(self, model) -> list:
        if self._tracked_norms is None:
            self._tracked_norms = tracked_norms(plain_module(model))
        return self._tracked_norms


def split_batch(global_batch: int, micro: int, processes: int) -> tuple[int, int]:
    """(micro-batch per process, accumulation steps) for ``global_batch`` examples per update over ``processes``:
    the largest micro-batch up to ``micro`` that divides each process's share. The update does not depend on it
    (the loss is normalised by the global target count), so a preset's micro-batch never stops a run that has
    more processes than it was written for."""
    if global_batch % processes:
        valid = [p for p in range(1, global_batch + 1) if global_batch % p == 0]
        raise ValueError(f"trainer.global_batch_size={global_batch} cannot be shared evenly by {processes} "
                         f"processes; use a process count that divides it ({valid[:12]}) or another global batch")
    share = global_batch // processes
    size = max(d for d in range(1, min(micro, share) + 1) if share % d == 0)
    return size, share // size


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory: CUDA allocator peak on a GPU, the process's peak resident set size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"


def plain_module(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DistributedDataParallel's wrappers (its parameters' own names)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)
