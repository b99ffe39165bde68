"""What ``python -m harness.run`` does with a composed config (:mod:`harness.run` is the entry point).

Compose ``conf/`` -> validate -> (skip if the run folder's record says completed with the same config hash)
-> build and prepare the task -> build the model -> train -> write the run record. The run folder is
``<run.root>/<task>/<backend>/<scale>/seed<seed>-<hash>``, so starting the same configuration again finds
its checkpoints and resumes. In a sweep, a failing run is recorded as failed and the sweep goes on; the sweep
ends with a summary of its cells and a non-zero exit when one failed (``harness.sweep``). SIGTERM, SIGINT and
SIGUSR1 stop a run at the next update boundary after a checkpoint, with its record marked ``interrupted`` and
exit code 75 (``harness.stop``). Under ``torchrun`` every process runs this; rank 0 alone writes the record,
logs and checkpoints (``harness.distributed``, ``harness.trainer``).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch import nn

import tasks
from harness import distributed, stop, sweep
from harness.config import ConfigError, RunConfig, config_hash, resolved_dict, validate
from harness.gpu_lease import one_gpu_per_job
from harness.gradient_log import GradientRecorder
from harness.metrics_log import MetricsLogger
from harness.prepare import prepare
from harness.run_folder import (
    Repairs,
    RunLock,
    RunLockedError,
    SpaceReserve,
    is_disk_full,
    live_writer,
    read_record_or_repair,
    remove_stale_temporaries,
)
from harness.run_record import (
    RunRecord,
    baseline_from_data,
    git_commit,
    host,
    is_completed,
    now,
    read_record,
    versions,
    write_record,
)
from harness.stop import RunInterrupted
from harness.trainer import Trainer
from harness.variants import placement

log = logging.getLogger(__name__)


def run_dir_for(cfg: RunConfig, digest: str) -> Path:
    return Path(cfg.run.root) / cfg.task.name / cfg.attention.name / cfg.scale.name / f"seed{cfg.seed}-{digest[:10]}"


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, shared (tied) ones counted once; and how many sit in embedding tables."""
    total = sum(p.numel() for p in model.parameters())
    embedding_params = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding)}
    return {"total": total, "embedding": sum(embedding_params.values()),
            "non_embedding": total - sum(embedding_params.values())}


def execute(cfg: DictConfig, experiment: str | None = None) -> dict[str, Any]:
    """Run the experiment ``cfg`` (composed by Hydra) and return its record; raises on failure (after
    recording it), ConfigError before any work when the configuration is invalid, and RunInterrupted when a
    stop signal arrived (after a checkpoint; the record says ``interrupted``)."""
    return execute_cell(cfg, experiment)[0]


def execute_cell(cfg: DictConfig, experiment: str | None = None) -> tuple[dict[str, Any], bool]:
    """:func:`execute`, and whether the run was skipped (completed before with the same configuration)."""
    typed = validate(cfg)
    if stop.requested():  # a sweep asked to stop: start nothing more
        raise RunInterrupted(f"not started: {stop.requested()} received before this run began")
    placement = distributed.from_environment()
    # a job among others on this machine (joblib) takes a GPU of its own; a run of several processes has its own
    lease = one_gpu_per_job(sweep.is_worker() and not placement.distributed and typed.trainer.device != "cpu")
    with stop.handling_stop_signals(), lease:
        if placement.distributed and not _completed(cfg, typed):
            prepare(typed)  # before the process group, whose timeout would run while one rank prepares alone
        process = distributed.setup(typed.trainer.device)
        try:
            return _execute(cfg, typed, experiment, process)
        finally:
            distributed.teardown()


def _completed(cfg: DictConfig, typed: RunConfig) -> bool:
    digest = config_hash(resolved_dict(cfg))
    return typed.run.skip_completed and is_completed(read_record(run_dir_for(typed, digest)), digest)


def _execute(cfg: DictConfig, typed: RunConfig, experiment: str | None,
             process: distributed.ProcessInfo) -> tuple[dict[str, Any], bool]:
    resolved = resolved_dict(cfg)
    digest = config_hash(resolved)
    run_dir = run_dir_for(typed, digest)
    previous = read_record(run_dir)
    if typed.run.skip_completed and is_completed(previous, digest):  # before the lock: read-only storage too
        return _skipped(previous, run_dir, process)
    repairs = Repairs()
    lock = RunLock(run_dir, repairs)
    if process.is_main:  # one writer per run folder; the OS drops the lock if this process dies
        lock.acquire()
    try:
        return _execute_locked(typed, experiment, process, resolved, digest, run_dir, lock, repairs)
    finally:
        lock.release()


def _execute_locked(typed: RunConfig, experiment: str | None, process: distributed.ProcessInfo,
                    resolved: dict[str, Any], digest: str, run_dir: Path, lock: RunLock,
                    repairs: Repairs) -> tuple[dict[str, Any], bool]:
    reserve = SpaceReserve(run_dir)

    def save(record: RunRecord) -> None:
        if process.is_main:
            record.repairs = repairs.items
            written = record.to_json()
            write_record(run_dir, written)  # stamps "updated"
            record.updated = written["updated"]

    if process.is_main:
        previous = read_record_or_repair(run_dir, repairs)
        writer = live_writer(previous)
        if writer is not None:  # its .lock was deleted under it: the record still names the live writer
            raise RunLockedError(f"{run_dir} is being written by {writer} (its {lock.path.name} was deleted); "
                                 "wait for it to finish or stop that process")
        remove_stale_temporaries(run_dir, repairs)
    else:
        previous = read_record(run_dir)
    distributed.barrier()  # every process has read the record before rank 0 rewrites it
    if previous is not None:
        repairs.merge(previous.get("repairs") or [])
    if typed.run.skip_completed and is_completed(previous, digest):  # completed since the read before the lock
        return _skipped(previous, run_dir, process)

    record = RunRecord("running", config_hash=digest, run_dir=str(run_dir), task=typed.task.name,
                       backend=typed.attention.name, scale=typed.scale.name, seed=typed.seed, experiment=experiment,
                       started=now(), versions=versions(), git=git_commit(), host=host(), config=resolved)
    if process.is_main:  # its place in the report's tables, so that readers never compose conf/ again
        record = dataclasses.replace(record, **placement(typed.task.name, typed.attention.name, typed.scale.name,
                                                         resolved))
    if process.is_main:
        reserve.allocate()  # before the first write: what frees space for the record of a full disk
    save(record)
    started = time.perf_counter()
    logger = trainer = None

    def wall_seconds() -> float:  # the whole run's, earlier segments included once the trainer has resumed
        # (a segment that stops before that, e.g. while preparing data, states its own time only)
        return (trainer.earlier_wall_seconds if trainer is not None else 0.0) + time.perf_counter() - started

    try:
        random.seed(typed.seed)
        torch.manual_seed(typed.seed)
        task = tasks.build(typed.task)
        with distributed.main_process_first():  # one process generates and caches the data
            task.prepare()
        if stop.requested() and process.world_size == 1:  # several processes vote in the first update instead
            raise RunInterrupted(f"{stop.requested()} received while preparing the data; nothing trained yet")
        model = task.build_model(typed.attention.as_mapping(), asdict(typed.model))
        record.parameters = count_parameters(model)
        record.data = {**task.describe(), **task.describe_model(model)}
        record.majority_baseline = baseline_from_data(record.data)
        save(record)
        if process.is_main:
            task.save_artifacts(run_dir)
        name = f"{typed.task.name}/{typed.attention.name}/{typed.scale.name}/seed{typed.seed}"
        logger = MetricsLogger(run_dir, typed.logger, run_id=digest[:16], name=name, config=resolved,
                               enabled=process.is_main, repairs=repairs)
        callbacks = []
        if typed.trainer.record_gradients:
            callbacks.append(GradientRecorder(model, run_dir))
        trainer = Trainer(typed.trainer, run_dir, typed.seed, logger, resume=typed.run.resume,
                          rank=process.rank, world_size=process.world_size, callbacks=callbacks, repairs=repairs,
                          on_update=lock.verify, segment_started=started)
        result = trainer.fit(model, task)
        if process.is_main:  # nothing is marked completed over a folder that lost files
            lock.verify()
            logger.verify_file()
    except RunLockedError:  # another process took the folder over: its record is not ours to write
        raise
    except RunInterrupted as err:
        record = dataclasses.replace(record, status="interrupted", reason=err.reason, wall_seconds=wall_seconds())
        save(record)
        if process.is_main:
            reserve.release()
        if logger is not None:
            logger.close(failed=True)
        log.warning("interrupted: %s", err.reason)
        raise
    except BaseException as err:
        _record_failure(err, record, save, reserve, process, wall_seconds())
        if logger is not None:
            logger.close(failed=True)
        raise
    valid_name, test_name = task.splits
    record = dataclasses.replace(
        record, status="completed", metrics=result.metrics,
        primary_metric={"name": task.primary_metric, "mode": task.primary_mode,
                        valid_name: result.metrics[f"{valid_name}/{task.primary_metric}"],
                        test_name: result.metrics[f"{test_name}/{task.primary_metric}"]},
        throughput={"steps_per_sec": result.steps_per_sec, "tokens_per_sec": result.tokens_per_sec},
        peak_memory_mb=result.peak_memory_mb, memory_kind=result.memory_kind, train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds, wall_seconds=wall_seconds(),
        resumed_from=result.resumed_from, segments=result.segments, processes=process.world_size, finished=now(),
    )
    try:
        save(record)
    except BaseException as err:  # the largest record: a disk that fills now still gets "failed"
        _record_failure(err, record, save, reserve, process, wall_seconds())
        raise
    if process.is_main:
        reserve.release()
    logger.summary(result.metrics | record.throughput)
    logger.close()
    if process.is_main:
        print(summary(record), flush=True)
        log.info("record: %s", run_dir / "record.json")
    return record.to_json(), False


def _skipped(previous: dict[str, Any], run_dir: Path, process: distributed.ProcessInfo) -> tuple[dict[str, Any], bool]:
    log.info("skipping %s: completed with the same config hash", run_dir)
    if process.is_main:
        print(f"skipped (already completed): {run_dir}")
    return previous, True


def _record_failure(err: BaseException, record: RunRecord, save: Any, reserve: SpaceReserve,
                    process: distributed.ProcessInfo, wall_seconds: float) -> None:
    """Mark the record failed with the error (freeing the space reserve first when the disk is full)."""
    if process.is_main and is_disk_full(err):
        reserve.release()  # room for the record that says so
    reason = f"{type(err).__name__}: {err}"
    failed = dataclasses.replace(record, status="failed", reason=reason, finished=now(),
                                 traceback=traceback.format_exc(limit=-8), wall_seconds=wall_seconds)
    try:
        save(failed)
    except OSError as save_error:
        log.error("the failed record could not be written (%s); the run failed with: %s", save_error, reason)
    if process.is_main:
        reserve.release()


def summary(record: RunRecord) -> str:
    """A few lines for the console: metrics beside the corpus's best achievable, throughput, memory."""
    primary, metrics, splits = record.primary_metric, record.metrics, record.primary_splits
    lines = [f"run: {record.run_dir}  ({record.task}, {record.backend}, scale={record.scale})"]
    scores = " | ".join(f"{split} {primary['name']} {primary[split]:.4g}" for split in splits)
    lines.append(f"{scores} | best step {metrics.get('best_step')}")
    corpus = record.data.get("corpus")
    if corpus:
        best = " / ".join(f"{split} {corpus[split]['oracle_ppl']:.4g}" for split in splits if split in corpus)
        no_recall = " / ".join(f"{split} {corpus[split]['no_recall_ppl']:.4g}" for split in splits if split in corpus)
        lines.append(f"corpus: best achievable perplexity {best}; without long-range recall {no_recall}")
    throughput, params = record.throughput, record.parameters
    lines.append(
        f"throughput: {throughput['steps_per_sec']:.3g} steps/s, {throughput['tokens_per_sec']:.4g} tokens/s | "
        f"peak memory {record.peak_memory_mb:.0f} MB ({record.memory_kind}) | "
        f"{params['total'] / 1e6:.3g}M parameters | wall {record.wall_seconds:.0f} s"
    )
    return "\n".join(lines)


def hydra_task(cfg: DictConfig) -> float | None:
    """The task function of ``harness.run``'s Hydra app: one run, or one cell of a sweep (its outcome written
    for the sweep's summary); returns the validation score, for sweepers that optimise it."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    experiment = hydra_cfg.runtime.choices.get("experiment")
    cell = sweep.Cell(Path(hydra_cfg.runtime.output_dir), hydra_cfg.job.num if multirun else None,
                      list(hydra_cfg.overrides.task), enabled=multirun and distributed.from_environment().is_main)
    if multirun and sweep.is_worker():
        stop.handle_stop_signals_from_now_on()  # between cells too: the worker must outlive a stop signal
        sweep.check_stop_marker(Path(hydra_cfg.sweep.dir))
    try:
        record, skipped = execute_cell(cfg, experiment)
    except ConfigError as err:
        cell.write("invalid", reason=str(err))
        if multirun:
            log.error("invalid configuration, run skipped: %s", err)
            return None
        raise SystemExit(f"invalid configuration: {err}") from None
    except RunLockedError as err:  # never recorded as failed: the record belongs to the live writer
        cell.write("locked", reason=str(err))
        if multirun:
            log.warning("run skipped, it is running elsewhere: %s", err)
            return None
        raise SystemExit(f"run not started: {err}") from None
    except RunInterrupted as err:
        cell.write("interrupted", reason=err.reason, run_dir=_run_dir_of(cfg))
        stop.run_previous_handlers()  # e.g. submitit's requeue, now that checkpoint and outcome are written
        if multirun:  # the sweep's other cells see the request and do not start; its summary says so
            return None
        raise SystemExit(stop.EXIT_INTERRUPTED) from None
    except Exception as err:
        cell.write("failed", reason=f"{type(err).__name__}: {err}", run_dir=_run_dir_of(cfg))
        if not multirun:
            raise
        log.error("run failed (recorded; the sweep goes on): %s: %s", type(err).__name__, err)
        return None
    cell.write("skipped" if skipped else "completed", run_dir=record.get("run_dir"))
    return RunRecord.from_json(record).primary_value(0)


def _run_dir_of(cfg: DictConfig) -> str | None:
    try:
        typed = validate(cfg)
        return str(run_dir_for(typed, config_hash(resolved_dict(cfg))))
    except Exception:  # only for the sweep's summary
        return None
