"""./reproduce.sh: arguments, the plan of each table, unavailable tables, and one smoke table end to end."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.config import split_points
from harness.experiments import TablePlan, core_tables, table_names, table_plan
from harness.report import recall
from harness.report.layout import Layout
from harness.reproduce import cli as reproduce
from harness.reproduce import plan
from harness.reproduce.cli import CORE_CPU_STEPS, data_overrides, expand_tables, parse_args, run_table
from harness.reproduce.plan import Context, Unavailable, bench_settings, check_task, plan_sweep, plan_table
from harness.run_record import load_records
from harness.stop import EXIT_INTERRUPTED
from harness.sweep import EXIT_CELLS_FAILED

REPO = Path(__file__).resolve().parents[2]


def test_no_table_is_the_core_claims_at_cpu_scale_within_the_time_budget():
    args = parse_args([])
    assert args.tables == core_tables() and args.scale == "cpu" and args.seeds == 3 and args.launcher == "local"
    assert f"trainer.max_steps={CORE_CPU_STEPS}" in args.overrides and args.ablation_task == "lm"
    assert parse_args(["table1"]).ablation_task == "auto" and parse_args(["--scale", "smoke"]).ablation_task == "auto"
    assert parse_args(["--scale", "smoke"]).seeds == 1  # seconds, not a confidence interval


def test_real_data_moves_the_run_tables_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTENTION_ZOO_CACHE", str(tmp_path / "cache"))
    args = parse_args(["--data", "wikitext-2", "--data-dir", str(tmp_path)])
    assert args.tables == [t for t in core_tables() if t not in ("table7", "fig2")]  # a benchmark and a diagnostic stay
    with pytest.raises(SystemExit):
        parse_args(["table7", "--data", "wikitext-2", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["table4", "--data", "wikitext-2"])  # no folder
    (tmp_path / "wiki.valid.tokens").write_text(" = A = \n a b \n")
    (tmp_path / "wiki.test.tokens").write_text(" = B = \n c \n = C = \n d \n")
    overrides = data_overrides("wikitext-2", tmp_path)  # valid + test only: made into three files in the cache
    folder = tmp_path / "cache" / "data" / "real" / "wikitext-2"
    assert overrides == ["task.data.source=files", f"task.data.path={folder}"]
    assert (folder / "wiki.train.tokens").read_text() == " = A = \n a b \n"
    assert (folder / "wiki.valid.tokens").read_text() == " = B = \n c \n"  # cut at the heading nearest the middle
    assert (folder / "wiki.test.tokens").read_text() == " = C = \n d \n"
    for name in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"):
        (tmp_path / name).write_text(" = A = \n a \n")
    assert data_overrides("wikitext-2", tmp_path) == ["task.data.source=files", f"task.data.path={tmp_path}"]


def test_tables_all_aliases_and_options():
    args = parse_args(["table8", "TABLE4", "pos", "--scale", "smoke", "--seeds", "3", "--launcher", "slurm", "--",
                       "trainer.lr=1e-3"])
    assert args.tables == ["table4", "table8", "pos_ablation"]  # the paper's order
    assert (args.scale, args.seeds, args.launcher) == ("smoke", 3, "slurm")
    assert args.overrides == ["trainer.progress=false", "trainer.lr=1e-3"]  # explicit tables: the preset's steps
    assert expand_tables(["all"]) == list(table_names()) == expand_tables(["fig2", "all"])
    assert parse_args(["table4", "--steps", "50"]).overrides[-1] == "trainer.max_steps=50"
    assert "trainer.max_steps=7" in parse_args(["--", "trainer.max_steps=7"]).overrides  # the user's wins
    assert f"trainer.max_steps={CORE_CPU_STEPS}" not in parse_args(["--", "trainer.max_steps=7"]).overrides


def test_a_table_brings_the_tables_that_share_its_page():
    """``./reproduce.sh recall`` runs the order sweep too: its claim is decided on the recall page."""
    assert expand_tables(["recall"]) == ["recall", "recall_order"] == expand_tables(["recall_order", "recall"])
    assert expand_tables(["recall_order"]) == ["recall_order"]
    for name in table_names():
        assert set(table_plan(name).with_tables) <= set(table_names()), f"{name}: with_tables names no table"
    assert recall.PAGES == (recall.PAGE, *table_plan(recall.PAGE).with_tables)  # the page's rows: what it runs


def test_a_with_tables_naming_no_table_is_an_error_naming_the_file(monkeypatch):
    real = reproduce.table_plan
    monkeypatch.setattr(reproduce, "table_plan", lambda name: TablePlan(order=15, with_tables=["recal_order"])
                        if name == "recall" else real(name))
    with pytest.raises(ValueError, match=r"conf/experiment/recall.yaml: reproduce.with_tables names no table: "
                                         r"\['recal_order'\]; valid: table1"):
        expand_tables(["recall"])


@pytest.mark.parametrize("argv, message", [
    (["table13"], "unknown table 'table13'; valid: table1"),
    (["--scale", "huge"], "invalid choice: 'huge'"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--launcher", "pbs"], "invalid choice: 'pbs'"),
])
def test_bad_arguments_are_refused_with_the_valid_choices(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_sweep_command():
    ctx = Context("smoke", 2, "slurm", Layout(Path("out")), ["trainer.lr=1e-3"])
    argv = ctx.sweep("table11", "task=mlm")
    assert argv[1:] == ["-m", "harness.run", "-m", "experiment=table11", "scale=smoke", "seed=0,1",
                        "hydra/launcher=submitit_slurm", "run.root=out/runs", "logger=none", "task=mlm",
                        "trainer.lr=1e-3"]


def test_what_each_table_needs_is_data_in_its_experiment_file(tmp_path, monkeypatch):
    assert set(core_tables()) == {"table1", "table4", "table7", "table8", "table11", "fig2"}
    assert bench_settings("cpu")["lengths"] == [1024, 3072, 5120] and table_plan("table7").bench is not None
    assert [a.command for a in table_plan("fig2").analysis] == ["locality"]
    assert table_plan("table2").analysis[0].options == {"smoke": ["--window", "5"]}
    assert {n for n in table_names() if table_plan(n).ablation} == {
        "table1", "table3", "table8", "table9", "table10", "table11", "table12", "pos_ablation"}
    (tmp_path / "tableX.yaml").write_text("reproduce:\n  cor: true\n")
    with pytest.raises(ValueError, match=r"tableX.yaml: invalid reproduce section: .*cor"):
        table_plan("tableX", tmp_path)


def test_split_points_cover_every_k_and_share_the_preset():
    assert split_points(4) == "split:0,split:1,null,split:3,split:4"
    assert split_points(2) == "split:0,null,split:2"
    assert split_points(1) == "split:0,split:1"


def test_unavailable_tables_say_why_and_the_rest_goes_on(capsys, tmp_path):
    ctx = Context("smoke", 1, "local", Layout(tmp_path))
    with pytest.raises(Unavailable, match=r"conf/experiment/table99.yaml does not exist"):
        plan_sweep("table99", ctx)
    with pytest.raises(Unavailable, match="unknown task 'nope'"):
        check_task("nope")
    outcome = run_table("table99", ctx, dry_run=True, notes=[])
    assert outcome.status == "unavailable" and "not yet available" in capsys.readouterr().out


def test_ablations_fall_back_to_the_causal_lm_and_say_so(monkeypatch, tmp_path):
    ctx = Context("smoke", 1, "local", Layout(tmp_path))
    monkeypatch.setattr(plan, "masked_lm", lambda ctx: ([], "task 'mlm': not implemented yet"))
    notes: list[str] = []
    argv = plan_table("table11", ctx, notes)[0].argv()
    assert "task=mlm" not in argv and notes == [
        "table11: the masked LM is not available (task 'mlm': not implemented yet); running on the causal LM (task=lm)"]
    monkeypatch.setattr(plan, "masked_lm", lambda ctx: (["task=mlm"], ""))
    assert "task=mlm" in plan_table("table11", ctx, [])[0].argv()
    ctx.ablation_task, notes = "lm", []
    assert "task=mlm" not in plan_table("table11", ctx, notes)[0].argv() and "on the causal LM" in notes[0]


def test_dry_run_prints_every_command(tmp_path, capsys):
    argv = ["table8", "table7", "fig2", "--scale", "smoke", "--dry-run", "--results", str(tmp_path)]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "experiment=table8" in out and "attention.layer_plan=split:0,null,split:2" in out
    assert f"harness.bench table7 --scale smoke --out {tmp_path}/bench/smoke/table7" in out
    assert "experiment=fig2" in out and "locality on the runs of experiment=fig2" in out
    assert not (tmp_path / "runs").exists()


def test_the_shell_script_passes_its_arguments_on():
    done = subprocess.run(["./reproduce.sh", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--launcher {joblib,local,slurm}" in done.stdout
    done = subprocess.run(["./reproduce.sh", "table0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown table 'table0'" in done.stderr


@pytest.mark.slow
def test_one_smoke_table_end_to_end_then_a_rerun_skips_it(tmp_path):
    command = ["./reproduce.sh", "table10", "--scale", "smoke", "--results", str(tmp_path), "--",
               "trainer.max_steps=2", "trainer.eval_every=2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "table10       done" in done.stdout
    table = (tmp_path / "report" / "smoke" / "table10.md").read_text()
    assert "cells: 2 ok, 0 failed, 0 incomplete, 0 missing" in table
    records = sorted((tmp_path / "runs").rglob("record.json"))
    assert len(records) == 2
    before = [json.loads(p.read_text())["updated"] for p in records]

    again = subprocess.run([*command[:6], "--no-report", *command[6:]], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped (already completed)") == 2, again.stdout[-3000:]
    assert [json.loads(p.read_text())["updated"] for p in records] == before


def test_a_sweep_after_the_double_dash_plans(tmp_path):
    ctx = Context("smoke", 1, "local", Layout(tmp_path), ["attention=vanilla,elu", "trainer.max_steps=3"])
    argv, cfg = plan_sweep("table4", ctx)
    assert "attention=vanilla,elu" in argv and cfg.attention.name == "vanilla"  # composed at the first value
    assert plan.first_values(["+ablation/pos=none,rope", "x=[1,2]"]) == ["+ablation/pos=none", "x=[1,2]"]


def _steps_exit(monkeypatch, codes: dict[str, int]) -> list[str]:
    """Every step 'runs' with the exit code of the first key found in its command line; returns what ran."""
    ran: list[str] = []

    def run_child(argv):
        ran.append(" ".join(argv))
        return next((code for key, code in codes.items() if key in " ".join(argv)), 0)

    monkeypatch.setattr(reproduce, "run_child", run_child)
    return ran


def test_a_sweep_with_failed_cells_lets_the_table_go_on_and_fails_the_command(monkeypatch, tmp_path, capsys):
    ran = _steps_exit(monkeypatch, {"experiment=table8": EXIT_CELLS_FAILED})  # a cell failed
    assert reproduce.main(["table8", "table11", "--scale", "smoke", "--no-report", "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert any("experiment=table11" in command for command in ran), ran  # the next table still ran
    assert "table8        cells failed: failed cells in" in out and "table11       done" in out


def test_a_sweep_that_could_not_start_fails_its_table(monkeypatch, tmp_path, capsys):
    _steps_exit(monkeypatch, {"experiment=table8": 1})  # Hydra's own error (a bad override): no cell ran
    assert reproduce.main(["table8", "--scale", "smoke", "--no-report", "--results", str(tmp_path)]) == 1
    assert "table8        failed: " in capsys.readouterr().out


def test_an_interrupted_sweep_stops_the_command_with_its_exit_code(monkeypatch, tmp_path, capsys):
    ran = _steps_exit(monkeypatch, {"experiment=table8": EXIT_INTERRUPTED})
    assert reproduce.main(["table8", "table11", "--scale", "smoke", "--no-report", "--results", str(tmp_path)]) == 75
    assert not any("experiment=table11" in command for command in ran), ran  # nothing more was started
    assert "table8        interrupted" in capsys.readouterr().out


def test_a_stop_signal_reaches_the_running_step(tmp_path):
    """SIGTERM to the orchestrator is passed to the step it runs (which checkpoints and exits 75)."""
    import signal
    import sys
    import time

    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    step = (f"import pathlib, signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: (pathlib.Path("
            f"{str(stopped)!r}).touch(), sys.exit(75)))\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(120)\n")
    orchestrator = ("import sys\nfrom harness.reproduce import cli as reproduce\n"
                    f"sys.exit(reproduce.run_child([sys.executable, '-c', {step!r}]))\n")
    process = subprocess.Popen([sys.executable, "-c", orchestrator], cwd=REPO)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 75 and stopped.exists()


def test_fine_tunings_run_after_their_pretraining_in_a_later_phase(tmp_path):
    ctx = Context("smoke", 1, "joblib", Layout(tmp_path), ["attention=vanilla", "task=mlm,glue/sst2"])
    steps = plan_table("table5", ctx, [])
    sweeps = [s.argv() for s in steps]
    assert [a for a in sweeps[0] if a.startswith("task=")] == ["task=mlm"]
    assert [a for a in sweeps[1] if a.startswith("task=")] == ["task=glue/sst2"]
    assert "phase 2 of 2" in steps[1].describe and "fine-tunes the runs of phase 1" in steps[1].describe
    ctx.overrides = ["attention=vanilla", "task=glue/sst2,glue/cola"]  # no pretraining in the sweep: one phase
    assert len(plan_table("table5", ctx, [])) == 1


@pytest.mark.slow
def test_table5_under_a_parallel_launcher_pretrains_before_it_fine_tunes(tmp_path):
    """The race of a single sweep (its fine-tuning started beside the pretraining it needs, under joblib) is gone:
    the orchestrator runs the pretraining phase to its end first."""
    command = ["./reproduce.sh", "table5", "--scale", "smoke", "--launcher", "joblib", "--results", str(tmp_path),
               "--no-report", "--", "attention=vanilla", "task=mlm,glue/sst2"]  # joblib: one job per core
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {r.task: r.status for r in load_records(tmp_path / "runs")}
    assert records == {"mlm": "completed", "glue/sst2": "completed"}


def test_gpus_per_run_asks_slurm_for_a_step_of_that_many_tasks(tmp_path, capsys):
    argv = ["table4", "--scale", "smoke", "--launcher", "slurm", "--gpus-per-run", "4", "--dry-run",
            "--results", str(tmp_path), "--", "attention=vanilla"]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "hydra/launcher=submitit_slurm hydra.launcher.gpus_per_node=4 hydra.launcher.tasks_per_node=4" in out
    with pytest.raises(SystemExit):
        parse_args(["table4", "--gpus-per-run", "2"])  # local: torchrun, one configuration at a time
    assert "needs --launcher slurm" in capsys.readouterr().err


def test_on_slurm_the_data_is_prepared_once_before_the_jobs(tmp_path):
    ctx = Context("smoke", 1, "slurm", Layout(tmp_path), ["attention=vanilla", "task=mlm,glue/sst2"])
    steps = plan_table("table5", ctx, [])
    assert [s.describe for s in steps[:2]] == ["table5: prepare the data of task=mlm",
                                              "table5: prepare the data of task=glue/sst2"]
    assert steps[0].argv()[1:3] == ["-m", "harness.prepare"] and steps[0].argv()[-1] == "task=mlm"
    assert "phase 1 of 2" in steps[2].describe
    ctx.launcher = "local"  # the runs prepare it themselves
    assert not any("prepare" in s.describe for s in plan_table("table5", ctx, []))


def test_on_slurm_the_tables_are_submitted_together(monkeypatch, tmp_path, capsys):
    import threading
    import time

    running, most, commands = [0], [0], []
    lock = threading.Lock()

    def submit(argv):  # stands for a sweep that waits for its jobs
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            commands.append(argv)
        time.sleep(0.5)
        with lock:
            running[0] -= 1
        return 0

    monkeypatch.setattr(reproduce, "run_child", submit)
    argv = ["table4", "table11", "--scale", "smoke", "--launcher", "slurm", "--no-report", "--results", str(tmp_path),
            "--", "hydra.launcher.partition=gpu", "trainer.max_steps=2"]
    assert reproduce.main(argv) == 0
    assert most[0] == 2  # both tables' steps at once, each table's own in order
    sweeps = [c for c in commands if c[1:4] == ["-m", "harness.run", "-m"]]
    assert {c[4] for c in sweeps} == {"experiment=table4", "experiment=table11"}
    assert all("hydra.launcher.partition=gpu" in c for c in sweeps)
    assert "table4        done" in capsys.readouterr().out
