"""``python -m harness.gpucheck [--out DIR] [--budget-s 600]``: the GPU check, ready for the day a GPU is lent.

On a machine with one CUDA GPU, within ``--budget-s`` seconds, each step in its own process group with its share of
what is left of the budget as a timeout (so one hang cannot eat the rest):
- ``conformance``: the battery of ``attention_zoo.conformance`` on CUDA for every registered backend, causal and
  bidirectional, causality again at the checker's small size knobs (as ``python -m attention_zoo.check`` runs it);
- ``lm_update``, ``mlm_update``: two training updates (the trainer's own) of the causal LM and the masked LM composed
  at paper scale, on the paper's micro-batch: loss, time per update, peak memory (``torch.cuda.max_memory_allocated``);
- ``table7``: ``python -m harness.bench table7 --device cuda --scale paper`` with the paper settings of
  ``conf/experiment/table7.yaml``;
- ``decode``: ``python -m harness.bench decode``, small.
Writes ``<out>/gpucheck.md`` and ``gpucheck.json`` (per step: status ok | failed | skipped | timeout, seconds, key
figures, error text), each step's output in ``<out>/logs/``, the benchmarks' own files in ``<out>/table7`` and
``<out>/decode``; exits 1 when a step is not ok. Without a CUDA device: "skipped: no CUDA device", exit 0
(``--require-gpu``: 1). ``--device cpu --smoke``: the same pipeline at smoke scale on two backends (the tests run it).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_io.atomic import write_json, write_text

if TYPE_CHECKING:
    from harness.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "gpucheck"
SMOKE_BACKENDS = ("vanilla", "transnormer_t2")
REPORT_RESERVE_S = 10.0  # kept back from the budget for the report
MIN_STEP_S = 5.0  # a step offered less is not started
# The check's corpus: the preset's lexicon (so the vocabulary is the paper-scale one: ~60K words, BPE's 50,265)
# but at most these many tokens per split, so that preparing it takes seconds instead of hours.
CORPUS_TOKENS = {"train_tokens": 1_000_000, "valid_tokens": 10_000, "test_tokens": 10_000}
DECODE = {"paper": ["--contexts", "1024,4096", "--tokens", "16", "--shapes", "paper"],
          "smoke": ["--contexts", "64", "--tokens", "4", "--shapes", "lm"]}
TABLE7_SMOKE = ["--lengths", "64", "--modes", "train"]  # one cell per backend: the tests' time
FAILED_CELLS = ("error", "timeout")  # benchmark cells that fail the step (out of memory is a result)


@dataclass(frozen=True)
class Settings:
    device: str  # cuda | cpu
    smoke: bool
    out: Path

    @property
    def scale(self) -> str:
        return "smoke" if self.smoke else "paper"


@dataclass
class StepResult:
    name: str
    status: str  # ok | failed | skipped | timeout
    seconds: float = 0.0
    limit_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Step:
    name: str
    weight: float  # its share of what is left of the budget, against the steps after it
    command: Callable[[Settings, float, Path], list[str]]  # (settings, limit_s, result file) -> argv
    read: Callable[[Settings, Path], tuple[dict[str, Any], str | None]]  # -> figures, error (None: passed)
    outputs: str | None = None  # its folder under the report's, emptied first: never read a previous check's


# ------------------------------------------------------------------------------------ child steps
def conformance_figures(settings: Settings, progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The battery on ``settings.device`` for every registered backend (two at smoke), both modes; ``progress``
    gets the figures after each backend, so a timeout still reports the backends done."""
    from attention_zoo import available, conformance
    from attention_zoo.check import maker, parse_args, resolve, small_variant

    names = list(SMOKE_BACKENDS) if settings.smoke else available()
    figures: dict[str, Any] = {"device": settings.device, "backends": 0, "checks": 0, "failed": []}
    for name in names:
        options = parse_args([name])  # the checker's own model sizes
        spec = resolve(name)
        make = maker(spec.name, {}, options.d_model, options.heads)
        small = small_variant(spec, {}, options.d_model, options.heads)
        for causal in (True, False):
            checks = conformance.battery(make, causal, device=settings.device,
                                         prefix_consistent=spec.prefix_consistent, small=small)
            for check, thunk in checks:
                figures["checks"] += 1
                try:
                    thunk()
                except Exception as err:  # a crash inside a mixer fails that check, not the battery
                    mode = "causal" if causal else "bidirectional"
                    figures["failed"].append(f"{name} {mode} {check}: {' '.join(str(err).split())[:300]}")
        figures["backends"] += 1
        progress(figures)
    return figures


def update_config(task: str, settings: Settings) -> RunConfig:
    """``task`` composed at the check's scale on its device, validated: one micro-batch per update (the preset's),
    the corpus capped at CORPUS_TOKENS."""
    from harness.compose import compose
    from harness.config import validate

    cfg = compose([f"task={task}", f"scale={settings.scale}", f"trainer.device={settings.device}", "logger=none"])
    cfg.trainer.global_batch_size = cfg.trainer.micro_batch_size
    for key, cap in CORPUS_TOKENS.items():
        cfg.task.corpus[key] = min(cfg.task.corpus[key], cap)
    return validate(cfg)


def update_figures(task_name: str, settings: Settings) -> dict[str, Any]:
    """Two training updates as ``harness.execute`` builds the run and the trainer updates (the first pays CUDA's
    one-time costs; the second is the time per update); peak memory over both."""
    import torch
    from torch import nn

    import tasks
    from harness.bench.child import synchronize
    from harness.execute import count_parameters
    from harness.trainer import Trainer, peak_memory_mb

    typed = update_config(task_name, settings)
    torch.manual_seed(typed.seed)
    task = tasks.build(typed.task)
    task.prepare()
    model = task.build_model(typed.attention.as_mapping(), asdict(typed.model))
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as run_dir:  # the trainer writes nothing in one update
        trainer = Trainer(typed.trainer, run_dir, typed.seed)
        model.to(trainer.device)
        cfg = typed.trainer
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                      weight_decay=cfg.weight_decay)  # as Trainer.fit makes it
        batches = task.train_batches(trainer.micro_batch_size, typed.seed)
        seconds = []
        for step in range(2):
            started = time.perf_counter()
            # the trainer's update itself (autocast, loss normalisation, finite guards), not a copy of it
            loss, targets, tokens, _, _ = trainer._update(model, task, optimizer, batches, step)
            synchronize(trainer.device)
            seconds.append(time.perf_counter() - started)
    peak, kind = peak_memory_mb(trainer.device)
    vocab = next(m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding))  # the token embedding
    return {"task": task_name, "backend": typed.attention.name, "scale": settings.scale, "device": str(trainer.device),
            "micro_batch": trainer.micro_batch_size, "seq_len": typed.task.seq_len, "d_model": typed.model.d_model,
            "n_layers": typed.model.n_layers, "n_heads": typed.model.n_heads, "vocab": vocab,
            "parameters_m": round(count_parameters(model)["total"] / 1e6, 2), "precision": cfg.precision,
            "loss": round(loss / targets, 3),
            "first_update_s": round(seconds[0], 3), "update_s": round(seconds[1], 3),
            "tokens_per_s": round(tokens / seconds[1]), "peak_memory_mib": round(peak), "memory_kind": kind}


def run_child(name: str, settings: Settings, result: Path) -> int:
    """One in-module step in this (fresh) process: its figures, or its error, written to ``result``."""
    done: dict[str, Any] = {}  # the figures so far: a step that fails half-way still reports them

    def write(figures: dict[str, Any], error: str | None = None) -> None:
        done.update(figures)
        write_json(result, {"figures": done, "error": error})

    try:
        if name == "conformance":
            figures = conformance_figures(settings, write)
            failed = figures["failed"]
            write(figures, f"{len(failed)} of {figures['checks']} checks failed: " + "; ".join(failed) if failed
                  else None)
        else:
            write(update_figures(name.removesuffix("_update"), settings))
    except Exception as err:  # recorded as the step's error; the parent goes on with the next step
        write({}, f"{type(err).__name__}: {err}")
        return 1
    return 0


def child_command(name: str) -> Callable[[Settings, float, Path], list[str]]:
    def command(settings: Settings, limit_s: float, result: Path) -> list[str]:
        return [sys.executable, "-m", "harness.gpucheck", "--run-step", name, "--device", settings.device,
                "--out", str(settings.out), "--result", str(result), *(["--smoke"] if settings.smoke else [])]

    return command


def read_child(settings: Settings, result: Path) -> tuple[dict[str, Any], str | None]:
    if not result.is_file():
        return {}, "the step wrote no result"
    found = json.loads(result.read_text())
    return found["figures"], found["error"]


# ---------------------------------------------------------------------------------- benchmark steps
def table7_command(settings: Settings, limit_s: float, result: Path) -> list[str]:
    """What ./reproduce.sh runs for Table 7 at the check's scale, on its device; no cell longer than the step."""
    from harness.reproduce.plan import bench_options

    smoke = ["--backends", *SMOKE_BACKENDS, *TABLE7_SMOKE] if settings.smoke else []
    return [sys.executable, "-m", "harness.bench", "table7", "--device", settings.device, "--scale", settings.scale,
            "--out", str(settings.out / "table7"), *bench_options(settings.scale), *smoke,
            "--timeout-s", str(int(limit_s))]


def decode_command(settings: Settings, limit_s: float, result: Path) -> list[str]:
    backends = SMOKE_BACKENDS if settings.smoke else ("vanilla", "transnormer_t2")
    return [sys.executable, "-m", "harness.bench", "decode", "--backends", *backends, *DECODE[settings.scale],
            "--device", settings.device, "--out", str(settings.out / "decode"), "--timeout-s", str(int(limit_s))]


def read_cells(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def cell_figures(cells: list[dict[str, str]], key: Callable[[dict[str, str]], str], value: str,
                 digits: int) -> tuple[dict[str, Any], str | None]:
    """Status counts and each measured cell's ``value``; an error naming the cells that failed."""
    figures: dict[str, Any] = {"cells": len(cells), **Counter(c["status"] for c in cells),
                               value: {key(c): round(float(c[value]), digits) for c in cells if c["status"] == "ok"}}
    failed = [f"{key(c)}: {c['status']} {c.get('error') or ''}".strip() for c in cells if c["status"] in FAILED_CELLS]
    if not cells:
        return figures, "no cell was measured"
    return figures, "; ".join(failed) or None


def read_table7(settings: Settings, result: Path) -> tuple[dict[str, Any], str | None]:
    cells = read_cells(settings.out / "table7" / "table7.csv")
    return cell_figures(cells, lambda c: f"{c['label']} {c['mode']} {c['length']}", "steps_per_sec", 3)


def read_decode(settings: Settings, result: Path) -> tuple[dict[str, Any], str | None]:
    cells = read_cells(settings.out / "decode" / "decode.csv")
    for cell in cells:
        if cell["status"] == "ok":
            cell["ms_per_token"] = str(float(cell["seconds_per_token"]) * 1e3)
    figures, error = cell_figures(cells, lambda c: f"{c['backend']} {c['shape']} {c['context']}", "ms_per_token", 3)
    return {"device": settings.device} | figures, error


STEPS = (
    Step("conformance", 2, child_command("conformance"), read_child),
    Step("lm_update", 1.5, child_command("lm_update"), read_child),  # generates its corpus: ~30 s of CPU
    Step("mlm_update", 1, child_command("mlm_update"), read_child),
    Step("table7", 4, table7_command, read_table7, outputs="table7"),
    Step("decode", 1, decode_command, read_decode, outputs="decode"),
)


# ----------------------------------------------------------------------------------------- the parent
def run_process(argv: list[str], limit_s: float, log: Path) -> int | None:
    """Run ``argv`` in its own process group, output to ``log``; its exit code, or None when it ran past
    ``limit_s`` (then the whole group is killed: a benchmark's cells too)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        output.write(f"$ {shlex.join(argv)}\n")
        output.flush()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if process.poll() is None:  # timed out, or this process is being stopped
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_step(step: Step, settings: Settings, limit_s: float, scratch: Path) -> StepResult:
    result_file = scratch / f"{step.name}.json"
    log = settings.out / "logs" / f"{step.name}.log"
    started = time.perf_counter()
    if step.outputs:
        shutil.rmtree(settings.out / step.outputs, ignore_errors=True)
    try:
        code = run_process(step.command(settings, limit_s, result_file), limit_s, log)
        figures, error = step.read(settings, result_file)
    except Exception as err:  # the step could not even start or be read: recorded, the next step goes on
        code, figures, error = 1, {}, f"{type(err).__name__}: {err}"
    seconds = round(time.perf_counter() - started, 1)
    if code is None:
        status, error = "timeout", f"ran past its {limit_s:.0f} s" + (f"; {error}" if error else "")
    elif code != 0 or error:
        status, error = "failed", error or f"exit code {code}: {log_tail(log)}"
    else:
        status = "ok"
    return StepResult(step.name, status, seconds, round(limit_s, 1), figures, error)


def log_tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:].strip() if log.is_file() else ""


def run_steps(settings: Settings, budget_s: float, steps: tuple[Step, ...] = STEPS) -> list[StepResult]:
    """Every step in order, each given its weight's share of what is left of the budget (time a step leaves
    unused goes to the ones after it); a step offered under MIN_STEP_S is skipped."""
    deadline = time.monotonic() + budget_s - REPORT_RESERVE_S
    results = []
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as scratch:
        for index, step in enumerate(steps):
            left = deadline - time.monotonic()
            limit = left * step.weight / sum(s.weight for s in steps[index:])
            if limit < MIN_STEP_S:
                result = StepResult(step.name, "skipped", error=f"no time left: {max(left, 0):.0f} s of the budget")
            else:
                result = run_step(step, settings, limit, Path(scratch))
            print(f"[gpucheck] {step.name:<12} {result.status:<8} {result.seconds:6.1f} s  "
                  f"{result.error or summary(result.figures)}"[:400], flush=True)
            results.append(result)
    return results


# ------------------------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    """Where the check ran (asked after the steps: the parent never holds a CUDA context while they run)."""
    import torch

    from harness.run_record import git_commit, host, now, versions

    return {"date": now(), "host": host(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "versions": versions(), "git": git_commit(ROOT)}


def summary(figures: dict[str, Any]) -> str:
    """The scalar figures as ``key=value`` pairs (lists and tables stay in the JSON)."""
    return ", ".join(f"{k}={v}" for k, v in figures.items() if isinstance(v, str | int | float)
                     and not isinstance(v, bool))


def markdown(report: dict[str, Any]) -> str:
    where = report["machine"]
    gpu = where["host"].get("gpu") or "no GPU"
    lines = [f"# GPU check: {report['status']}", "",
             f"`{report['command']}` on {where['host']['hostname']} ({gpu}), {where['date']}; torch {where['torch']} "
             f"(CUDA {where['cuda']}), commit {(where['git'] or {}).get('commit', 'unknown')}. Device "
             f"{report['device']}, scale {report['scale']}, budget {report['budget_s']:g} s, used "
             f"{report['seconds']:.0f} s.", ""]
    if report.get("reason"):
        lines += [f"{report['status']}: {report['reason']}", ""]
    if report["steps"]:
        lines += ["| step | status | seconds | limit (s) | figures |", "|---|---|---|---|---|"]
        lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s['limit_s']:.0f} | {summary(s['figures'])} |"
                  for s in report["steps"]]
        lines += ["", "Per cell: gpucheck.json; the benchmarks' own tables: table7/table7.md, decode/decode.md; "
                  "each step's output: logs/.", ""]
    for step in (s for s in report["steps"] if s["error"]):
        lines += [f"## {step['name']}: {step['status']}", "", "```text", step["error"], "```", ""]
    return "\n".join(lines)


def write_report(settings: Settings, budget_s: float, started: float, steps: list[StepResult],
                 reason: str | None = None) -> dict[str, Any]:
    """gpucheck.json and gpucheck.md, atomically; returns the report."""
    status = "skipped" if reason else "ok" if all(s.status == "ok" for s in steps) else "failed"
    report = {"status": status, "reason": reason, "command": shlex.join(["python", "-m", "harness.gpucheck",
                                                                         *sys.argv[1:]]),
              "device": settings.device, "scale": settings.scale, "budget_s": budget_s,
              "seconds": round(time.perf_counter() - started, 1), "machine": machine(),
              "steps": [asdict(s) for s in steps]}
    write_json(settings.out / "gpucheck.json", report)
    write_text(settings.out / "gpucheck.md", markdown(report))
    return report


# --------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default: %(default)s)")
    parser.add_argument("--budget-s", type=float, default=600.0, help="seconds for the whole check (default 600)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--smoke", action="store_true", help="smoke scale, two backends: the pipeline in seconds")
    parser.add_argument("--require-gpu", action="store_true", help="exit 1, not 0, when there is no CUDA device")
    parser.add_argument("--run-step", choices=[s.name for s in STEPS[:3]], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(args.device, args.smoke, args.out.resolve())
    if args.run_step:
        return run_child(args.run_step, settings, args.result)
    import torch

    started = time.perf_counter()
    if settings.device == "cuda" and not torch.cuda.is_available():
        write_report(settings, args.budget_s, started, [], reason="no CUDA device")
        print(f"skipped: no CUDA device (wrote {settings.out}/gpucheck.md)")
        return 1 if args.require_gpu else 0
    report = write_report(settings, args.budget_s, started, run_steps(settings, args.budget_s))
    print(f"{report['status']} in {report['seconds']:.0f} s: wrote {settings.out}/gpucheck.{{md,json}}")
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
