"""The run record is one typed object: written and read by the same code, older versions migrated on read."""
from __future__ import annotations

from harness.run_record import RECORD_VERSION, RunRecord

V1_GLUE = {"status": "completed", "task": "glue/sst2", "primary_metric": {"name": "accuracy", "mode": "max",
                                                                          "validation": 0.9, "validation_again": 0.9},
           "data": {"majority_baseline": {"validation": 0.56}}}
V1_LRA = {"status": "completed", "task": "lra/text", "primary_metric": {"name": "accuracy", "mode": "max",
                                                                        "valid": 0.6, "test": 0.62},
          "data": {"splits": {"valid": {"majority_baseline": 0.5}, "test": {"majority_baseline": 0.49}}}}


def test_version_1_records_read_with_one_baseline_shape():
    glue, lra = RunRecord.from_json(V1_GLUE), RunRecord.from_json(V1_LRA)
    assert glue.version == lra.version == 1
    assert glue.majority_baseline == {"validation": 0.56} and lra.majority_baseline == {"valid": 0.5, "test": 0.49}
    assert (glue.baseline_value(1), lra.baseline_value(1)) == (None, 0.49)
    assert (lra.primary_splits, lra.primary_value(0), lra.primary_value(1)) == (["valid", "test"], 0.6, 0.62)


def test_round_trip_keeps_unknown_keys_and_stamps_the_version():
    raw = RunRecord.from_json(V1_LRA | {"from_the_future": [1, 2]}).to_json()
    assert raw["from_the_future"] == [1, 2] and raw["primary_metric"] == V1_LRA["primary_metric"]
    fresh = RunRecord("running", task="lm").to_json()
    assert fresh["version"] == RECORD_VERSION and RunRecord.from_json(fresh).to_json() == fresh


def test_a_completed_run_writes_the_current_version(smoke_config):
    from harness.run import execute

    record = execute(smoke_config("trainer.max_steps=2", "trainer.eval_every=2"))
    assert record["version"] == RECORD_VERSION and record["segments"] == 1 and record["majority_baseline"] == {}
