import json

import pandas as pd
import pytest

from harness.bench.cli import main
from harness.bench.table7 import parse_backend
from harness.bench.table7_render import layout, memory_growth_table, ratio_table

TINY = ["table7", "--scale", "smoke", "--device", "cpu", "--warmup", "0", "--repeats", "1", "--threads", "1"]


def test_table7_command_writes_csv_markdown_and_plots(tmp_path):
    code = main([*TINY, "--backends", "transnormer_t2", "--lengths", "32", "--modes", "train", "--out", str(tmp_path)])
    assert code == 0
    table = pd.read_csv(tmp_path / "table7.csv")
    assert table[["backend", "mode", "length", "status"]].values.tolist() == [["transnormer_t2", "train", 32, "ok"]]
    assert (table["steps_per_sec"] > 0).all() and table["peak_memory_mib"].notna().all()
    text = (tmp_path / "table7.md").read_text()
    assert "| Method | train 32 |" in text and "| TransNormer T2 |" in text
    env = json.loads((tmp_path / "table7.json").read_text())["environment"]
    assert env["cpu"] and env["versions"]["torch"] and "load_average_start" in env
    assert (tmp_path / "table7_speed.png").stat().st_size > 0 and (tmp_path / "table7_memory.png").exists()


def test_out_of_memory_is_recorded_and_the_sweep_goes_on(tmp_path):
    # 2 heads x 32768^2 fp32 scores need 8 GiB: far beyond a 6 GiB address space.
    code = main([*TINY, "--backends", "vanilla:impl=math", "--lengths", "32768,65536", "--modes", "inference",
                 "--memory-cap-gb", "6", "--out", str(tmp_path)])
    assert code == 0
    table = pd.read_csv(tmp_path / "table7.csv")
    assert table["status"].tolist() == ["oom", "skipped"]
    assert "| Transformer (`vanilla:impl=math`) | - | - |" in (tmp_path / "table7.md").read_text()


def test_unknown_backend_fails_naming_the_choices(tmp_path, capsys):
    assert main([*TINY, "--backends", "nosuch", "--out", str(tmp_path)]) == 2
    assert "vanilla" in capsys.readouterr().err


def test_backend_knob_overrides():
    assert parse_backend("vanilla") == ("vanilla", "vanilla", {})
    assert parse_backend("vanilla:impl=math,attn_dropout=0.1") == (
        "vanilla:impl=math,attn_dropout=0.1", "vanilla", {"impl": "math", "attn_dropout": 0.1})
    with pytest.raises(ValueError, match="key=value"):
        parse_backend("vanilla:impl")


def test_layout_and_ratios_follow_the_paper():
    rows = [
        {"label": "vanilla", "backend": "vanilla", "mode": "train", "length": 1024, "status": "ok",
         "steps_per_sec": 10.0, "error": None},
        {"label": "vanilla", "backend": "vanilla", "mode": "train", "length": 3072, "status": "oom",
         "steps_per_sec": None, "error": "RuntimeError"},
        {"label": "transnormer_t2", "backend": "transnormer_t2", "mode": "train", "length": 1024, "status": "ok",
         "steps_per_sec": 20.0, "error": None},
        {"label": "transnormer_t2", "backend": "transnormer_t2", "mode": "train", "length": 3072, "status": "ok",
         "steps_per_sec": 8.0, "error": None},
    ]
    results = pd.DataFrame(rows)
    table = layout(results, "steps_per_sec", ".3g")
    assert "| Method | train 1K | train 3K |" in table
    assert "| Transformer | 10 | - |" in table and "| TransNormer T2 | 20 | 8 |" in table
    ratios = ratio_table(results, "vanilla")
    assert "| backend | mode | 1K | 3K |" in ratios
    assert "| transnormer_t2 | train | 2.00 (1.92) |  |" in ratios  # paper: 29.41 / 15.34; vanilla OOM at 3K


def test_memory_growth_tells_linear_from_quadratic():
    lengths = [1024, 2048, 4096]
    rows = [{"label": label, "backend": label, "mode": "train", "length": n, "status": "ok",
             "peak_memory_mib": 100 + (n / 1024 if label == "linear" else (n / 1024) ** 2) * 50}
            for label in ("linear", "quadratic") for n in lengths]
    table = memory_growth_table(pd.DataFrame(rows))
    assert "| linear | train | 50 | 1.000 | 1.50 |" in table  # 150, 200, 300 MiB: affine, below 2x
    assert "| quadratic | train |" in table and table.strip().endswith("| 3.00 |")


def test_runs_interleave_backends_and_give_paired_ratios(tmp_path):
    """--runs 2: every cell twice, table7.csv one row per cell (all timed steps), the ratio per run."""
    argv = [*TINY, "--backends", "vanilla", "transnormer_t2", "--lengths", "32", "--modes", "train", "--runs", "2",
            "--repeats", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    runs = pd.read_csv(tmp_path / "table7_runs.csv")
    assert list(runs["run"]) == [0, 0, 1, 1] and list(runs["label"]) == ["vanilla", "transnormer_t2"] * 2
    cells = pd.read_csv(tmp_path / "table7.csv", dtype={"times_s": str})
    assert len(cells) == 2 and all(len(t.split(";")) == 4 for t in cells["times_s"])
    t2 = runs[runs["label"] == "transnormer_t2"]["steps_per_sec"].to_numpy()
    vanilla = runs[runs["label"] == "vanilla"]["steps_per_sec"].to_numpy()
    ratios = sorted(t2 / vanilla)
    text = (tmp_path / "table7.md").read_text()
    assert f"[{ratios[0]:.2f}-{ratios[1]:.2f}, 2 runs]" in text
