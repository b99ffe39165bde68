"""The run record is one typed object, written and read by the same code, complete when written (its place in the
tables included); older versions are migrated once by ``python -m harness.migrate_records``, never on read."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.migrate_records import main as migrate_main
from harness.migrate_records import migrate
from harness.report.records import placed_records
from harness.run_record import RECORD_FILE, RECORD_VERSION, RunRecord, load_records
from harness.variants import Defaults

V1_GLUE = {"status": "completed", "task": "glue/sst2", "primary_metric": {"name": "accuracy", "mode": "max",
                                                                          "validation": 0.9, "validation_again": 0.9},
           "data": {"majority_baseline": {"validation": 0.56}}}
V1_LRA = {"status": "completed", "task": "lra/text", "primary_metric": {"name": "accuracy", "mode": "max",
                                                                        "valid": 0.6, "test": 0.62},
          "data": {"splits": {"valid": {"majority_baseline": 0.5}, "test": {"majority_baseline": 0.49}}}}


def test_version_1_records_migrate_to_one_baseline_shape():
    glue, lra = RunRecord.from_json(V1_GLUE), RunRecord.from_json(V1_LRA)
    assert glue.version == lra.version == 1 and glue.majority_baseline == {}  # nothing is migrated on read
    glue, lra = migrate(glue, Defaults()), migrate(lra, Defaults())
    assert glue.version == lra.version == RECORD_VERSION
    assert glue.majority_baseline == {"validation": 0.56} and lra.majority_baseline == {"valid": 0.5, "test": 0.49}
    assert (glue.baseline_value(1), lra.baseline_value(1)) == (None, 0.49)
    assert (lra.primary_splits, lra.primary_value(0), lra.primary_value(1)) == (["valid", "test"], 0.6, 0.62)


def test_round_trip_keeps_unknown_keys_and_stamps_the_version():
    raw = RunRecord.from_json(V1_LRA | {"from_the_future": [1, 2]}).to_json()
    assert raw["from_the_future"] == [1, 2] and raw["primary_metric"] == V1_LRA["primary_metric"]
    fresh = RunRecord("running", task="lm").to_json()
    assert fresh["version"] == RECORD_VERSION and RunRecord.from_json(fresh).to_json() == fresh


def test_a_completed_run_writes_the_current_version(smoke_config):
    from harness.execute import execute

    record = execute(smoke_config("trainer.max_steps=2", "trainer.eval_every=2"))
    assert record["version"] == RECORD_VERSION and record["segments"] == 1 and record["majority_baseline"] == {}


def test_an_old_record_is_left_out_of_the_report_until_migrated_once(smoke_config, tmp_path, caplog):
    from harness.execute import execute

    written = execute(smoke_config("trainer.max_steps=2", "trainer.eval_every=2", f"run.root={tmp_path}"))
    placed = {k: written[k] for k in ("variant", "group", "context", "context_any_budget", "preset")}
    assert placed["variant"] == {} and placed["preset"] is written["backend"].startswith("transnormer")
    assert all(placed[k] for k in ("group", "context", "context_any_budget"))
    path = Path(written["run_dir"]) / RECORD_FILE
    old = {k: v for k, v in written.items() if k not in placed} | {"version": 2}
    path.write_text(json.dumps(old))

    with caplog.at_level(logging.WARNING):
        assert placed_records(tmp_path) == []
    assert "python -m harness.migrate_records" in caplog.text
    assert migrate_main([str(tmp_path)]) == 0
    [migrated] = load_records(tmp_path)
    assert migrated.version == RECORD_VERSION and migrated.updated == written["updated"]
    assert {k: getattr(migrated, k) for k in placed} == placed  # what the run itself records
    assert len(placed_records(tmp_path)) == 1
    assert migrate_main([str(tmp_path)]) == 0 and json.loads(path.read_text()) == migrated.to_json()  # once


def test_the_seeds_of_a_glue_setting_form_one_group_and_old_records_are_placed_again(tmp_path):
    """``task.pretrain_seed`` follows the seed by default (``${seed}``): it is part of the seed in the group and
    the context, so a GLUE cell gathers its seeds; a different value is a setting of its own. Records written
    when it split the seeds are placed again by the migration (and only those)."""
    from harness.migrate_records import migrate_folder
    from harness.run_record import context_config, without_seed
    from tests.report.conftest import write_run

    folders = [write_run(tmp_path, "task=glue/sst2", "attention=vanilla", f"seed={s}", valid=0.8) for s in (0, 1)]
    records = sorted(load_records(tmp_path), key=lambda r: r.seed)
    assert [r.config["task"]["pretrain_seed"] for r in records] == [0, 1]
    assert records[0].group == records[1].group and records[0].context == records[1].context
    other = {**records[1].config, "task": {**records[1].config["task"], "pretrain_seed": 0}}  # seed 1 from seed 0's
    assert "pretrain_seed" in without_seed(other)["task"] and "pretrain_seed" in context_config(other)["task"]
    old = json.loads((folders[1] / RECORD_FILE).read_text())
    old["group"] = old["context"] = "written-by-older-code"
    (folders[1] / RECORD_FILE).write_text(json.dumps(old))
    assert migrate_folder(tmp_path) == [folders[1]]
    assert len({r.group for r in load_records(tmp_path)}) == 1 and migrate_folder(tmp_path) == []


def test_a_migrated_copy_keeps_the_run_dir_it_states(tmp_path):
    """Committed evidence is a copy whose records state where the run ran; migrating the copy keeps that."""
    from harness.migrate_records import migrate_folder
    from tests.report.conftest import write_run

    folder = write_run(tmp_path, "task=glue/sst2", "attention=vanilla", valid=0.8)
    raw = json.loads((folder / RECORD_FILE).read_text())
    raw["run_dir"], raw["group"] = "results/runs/glue/sst2/elsewhere", "written-by-older-code"
    (folder / RECORD_FILE).write_text(json.dumps(raw))
    assert migrate_folder(tmp_path) == [folder]
    migrated = json.loads((folder / RECORD_FILE).read_text())
    assert migrated["run_dir"] == "results/runs/glue/sst2/elsewhere" and migrated["group"] != raw["group"]


def test_spent_seconds_is_at_least_the_summed_training_of_every_segment():
    """A resumed run recorded before its wall time summed over segments states only the last segment's (7 s after
    32 s of training): the report's costs take the training and evaluation time, which did sum, as the floor."""
    old_resumed = RunRecord("completed", wall_seconds=7.0, train_seconds=32.0, eval_seconds=2.0, segments=2)
    assert old_resumed.spent_seconds == 34.0
    whole = RunRecord("completed", wall_seconds=50.0, train_seconds=32.0, eval_seconds=2.0)
    assert whole.spent_seconds == 50.0
    assert RunRecord("running").spent_seconds is None


def test_relative_folder_is_the_placement_under_any_runs_root():
    record = RunRecord("completed", run_dir="/anywhere/docs/results/runs/glue/sst2/vanilla/cpu/seed0-abc",
                       task="glue/sst2")
    assert record.relative_folder == "glue/sst2/vanilla/cpu/seed0-abc"
