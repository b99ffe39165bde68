"""Data-parallel training under torchrun (gloo, 2 CPU processes): the same model as one process with the same
global batch, one record and one set of checkpoints, evaluation over all examples, resume across a change of
the number of processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import distributed
from harness.execute import execute
from tests.harness.conftest import SMOKE, compose_config

REPO = Path(__file__).resolve().parents[2]
# 4 examples per process and micro-batch: one process accumulates 2 micro-batches, two processes 1 each
RUN = ("trainer.max_steps=6", "trainer.global_batch_size=8", "trainer.micro_batch_size=4",
       "trainer.checkpoint_every=3", "trainer.eval_every=3", "trainer.device=cpu", "model.dropout=0.0")
# Loss sums are reduced in a different order across processes: equal up to float32 rounding.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def torchrun(root: Path, processes: int, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "harness.run", *SMOKE, f"run.root={root}", *RUN, *overrides]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = max((run_dir / "checkpoints").glob("step_*.pt"))
    return torch.load(latest, map_location="cpu", weights_only=True)["model"]


def logged(run_dir: Path) -> list[dict[str, float]]:
    """The metrics.jsonl lines without wall-clock figures."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "time" and not k.endswith("_per_sec")} for line in lines]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, the same global batch by accumulation."""
    root = tmp_path_factory.mktemp("single")
    record = execute(compose_config(*SMOKE, f"run.root={root}", *RUN))
    return record, Path(record["run_dir"])


def test_two_processes_train_the_same_model_as_one(tmp_path, single_process):
    reference, reference_dir = single_process
    result = torchrun(tmp_path / "runs", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("record.json")}
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "completed" and record["processes"] == 2
    assert record["config_hash"] == reference["config_hash"]  # the number of processes is not configuration
    assert_same_weights(final_weights(reference_dir), final_weights(run_dir))
    # evaluation covers every example, shared between the processes and reduced: the same perplexity
    for key, value in reference["metrics"].items():
        assert record["metrics"][key] == pytest.approx(value, rel=1e-4), key
    # one writer, and the same training curve: loss, gradient norm (after the reduction), learning rate
    ours, theirs = logged(run_dir), logged(reference_dir)
    assert [line.keys() for line in ours] == [line.keys() for line in theirs]
    for line, expected in zip(ours, theirs):
        assert line == pytest.approx(expected, rel=1e-4), line["step"]
    assert "skipped" not in result.stdout


def test_resume_with_a_different_number_of_processes(tmp_path, single_process):
    """Two processes reach step 3 and stop; one process resumes from that checkpoint to the end."""
    reference, reference_dir = single_process
    root = tmp_path / "runs"
    result = torchrun(root, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in root.rglob("record.json")}
    for path in (run_dir / "checkpoints").glob("step_00000006.pt*"):
        path.unlink()  # as if stopped after the checkpoint of step 3
    record = json.loads((run_dir / "record.json").read_text())
    (run_dir / "record.json").write_text(json.dumps(record | {"status": "running"}))

    resumed = execute(compose_config(*SMOKE, f"run.root={root}", *RUN))
    assert resumed["resumed_from"] == 3 and resumed["processes"] == 1
    assert_same_weights(final_weights(reference_dir), final_weights(run_dir))


def test_single_process_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.setup("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert not distributed.is_active()
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_sum(values), values)


def test_invalid_placement_is_reported(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(RuntimeError, match="RANK=2, WORLD_SIZE=2"):
        distributed.from_environment()


@pytest.mark.parametrize("task", [("task=mlm",), ("task=glue/sst2", "task.init_from=null"), ("task=lra/listops",)],
                         ids=["mlm", "glue", "lra"])
def test_every_task_family_with_two_processes_equals_one(tmp_path, task):
    """The masked LM's masks are drawn per example from its place in the training stream, not per process; a
    classifier's batches are cut from the same global order: the same model whatever the process count."""
    reference = execute(compose_config(*SMOKE, f"run.root={tmp_path / 'single'}", *RUN, *task))
    result = torchrun(tmp_path / "runs", 2, *task)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("record.json")}
    assert_same_weights(final_weights(Path(reference["run_dir"])), final_weights(run_dir))
    for line, expected in zip(logged(run_dir), logged(Path(reference["run_dir"]))):
        assert line == pytest.approx(expected, rel=1e-4), line["step"]


def test_a_micro_batch_equal_to_the_global_batch_runs_on_two_processes(tmp_path, single_process):
    """GLUE's and LRA's presets set micro = global: with 2 processes each takes half, one forward each."""
    reference, reference_dir = single_process
    result = torchrun(tmp_path / "runs", 2, "trainer.micro_batch_size=8")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("record.json")}
    assert_same_weights(final_weights(reference_dir), final_weights(run_dir))


def slurm_step(root: Path, tasks: int, *overrides: str) -> list[subprocess.CompletedProcess]:
    """A SLURM job step of ``tasks`` tasks on one node, as srun starts them (no torchrun variables)."""
    command = [sys.executable, "-m", "harness.run", *SMOKE, f"run.root={root}", *RUN, *overrides]
    processes = []
    for rank in range(tasks):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
        env |= {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "SLURM_JOB_ID": str(4242 + os.getpid() % 1000),
                "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                "SLURM_STEP_NUM_NODES": "1"}
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in processes]


def test_the_tasks_of_a_slurm_step_train_as_one_group(tmp_path, single_process):
    reference, reference_dir = single_process
    results = slurm_step(tmp_path / "runs", 2)
    assert all(r.returncode == 0 for r in results), results[0].stderr[-3000:] + results[1].stderr[-3000:]
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("record.json")}
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "completed" and record["processes"] == 2
    assert record["config_hash"] == reference["config_hash"]
    assert_same_weights(final_weights(reference_dir), final_weights(run_dir))


def test_a_slurm_step_places_each_task(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu-node-17")
    info = distributed.from_environment()
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    assert info.init_method == "tcp://gpu-node-17:23456"
    monkeypatch.setenv("SLURM_PROCID", "4")
    with pytest.raises(RuntimeError, match="SLURM_PROCID=4, SLURM_STEP_NUM_TASKS=4"):
        distributed.from_environment()
    monkeypatch.setenv("RANK", "0")  # torchrun's variables win
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.from_environment().world_size == 1
