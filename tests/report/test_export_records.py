"""``python -m harness.export_records``: the evidence of completed runs copied at the same place, nothing else."""
from __future__ import annotations

from harness.export_records import export, main
from harness.report.records import placed_records
from tests.report.conftest import write_run


def test_only_completed_runs_records_and_metrics_are_copied(tmp_path):
    source, dest = tmp_path / "results" / "runs", tmp_path / "docs" / "runs"
    done = write_run(source, "attention=vanilla", valid=5.0)
    failed = write_run(source, "attention=elu", status="failed", reason="boom")
    (done / "checkpoints").mkdir()
    (done / "checkpoints" / "step_3.pt").write_bytes(b"weights")
    written = export(source, dest)
    copied = dest / done.relative_to(source)
    assert sorted(p.name for p in copied.iterdir()) == ["metrics.jsonl", "record.json"]
    assert not (dest / failed.relative_to(source)).exists()
    assert len(written) == 2 and export(source, dest) == []  # unchanged: nothing rewritten
    assert [r.backend for r in placed_records(dest)] == ["vanilla"]  # the report reads the copies


def test_filters_by_task_prefix_and_the_cli_names_a_missing_folder(tmp_path, capsys):
    source, dest = tmp_path / "runs", tmp_path / "out"
    write_run(source, "attention=vanilla")
    assert export(source, dest, tasks=["recall/"]) == []
    assert main([str(source), str(dest)]) == 0 and "2 file(s) written" in capsys.readouterr().out
    try:
        main([str(tmp_path / "nowhere"), str(dest)])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "is not a folder" in capsys.readouterr().err
