"""The diagnostics on finished runs: gradients recorded by the trainer, then each command on the run folders."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harness.analyze.__main__ import main
from harness.compose import register_configs
from harness.execute import execute

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
STEPS = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short smoke runs (softmax and 1+elu) trained with gradient recording on."""
    root = tmp_path_factory.mktemp("runs")
    previous = os.environ.get("ATTENTION_ZOO_CACHE")
    os.environ["ATTENTION_ZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    folders = []
    try:
        for attention in ("vanilla", "elu"):
            register_configs()  # resolvers and schemas (nothing registers on import)
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose("config", overrides=[
                    "scale=smoke", "logger=none", "trainer.progress=false", f"run.root={root}",
                    f"attention={attention}", f"trainer.max_steps={STEPS}", f"trainer.eval_every={STEPS}",
                    f"trainer.checkpoint_every={STEPS}", "trainer.record_gradients=true",
                ])
            folders.append(Path(execute(cfg)["run_dir"]))
    finally:
        if previous is None:
            os.environ.pop("ATTENTION_ZOO_CACHE", None)
        else:
            os.environ["ATTENTION_ZOO_CACHE"] = previous
    return folders


def test_trainer_records_gradient_norms_per_update(runs):
    stats = pd.read_csv(runs[0] / "gradient_stats.csv")
    assert sorted(stats["step"].unique()) == list(range(1, STEPS + 1))
    assert len(stats) == STEPS * 2 * 4  # updates x layers x (q, k, v, qkv)
    assert (stats["grad_norm"] > 0).all()


def test_gradient_deviation_table(runs, tmp_path):
    main(["gradient-deviation", *map(str, runs), "--window", "3", "--skip", "0", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "table2.csv")
    assert table["backend"].tolist() == ["vanilla", "elu"]
    assert table["paper"].tolist() == [0.25, 0.58]
    assert (table["deviation"] > 0).all() and (table["updates"] == STEPS).all()
    assert (tmp_path / "table2.png").exists() and (runs[1] / "analysis" / "gradient_deviation.csv").exists()


def test_locality_and_proposition_on_run_folders(runs, tmp_path):
    main(["locality", *map(str, runs), "--batches", "1", "--ratios", "0,0.5,1", "--out", str(tmp_path)])
    curves = pd.read_csv(tmp_path / "locality.csv")
    overall = curves[curves["layer"] == "all"]
    assert set(overall["label"]) == {"vanilla", "elu"}
    assert overall.groupby("label")["score"].apply(list).map(lambda s: s[0] == 0 and abs(s[-1] - 1) < 1e-5).all()
    assert (runs[0] / "analysis" / "locality.png").exists()

    main(["proposition", *map(str, runs), "--batches", "1", "--rows", "8", "--out", str(tmp_path)])
    summary = pd.read_csv(tmp_path / "proposition_summary.csv").set_index("label")
    assert summary.loc["vanilla", "family"] == "softmax" and summary.loc["vanilla", "max"] <= 0.25
    assert summary.loc["elu", "family"] == "kernel" and summary.loc["elu", "entries"] > 0
    assert (runs[1] / "analysis" / "proposition.png").exists()


def test_a_folder_without_a_run_is_refused_with_a_message(tmp_path, capsys):
    assert main(["locality", str(tmp_path)]) == 2
    assert "no readable run record" in capsys.readouterr().err


def test_untrained_models_need_no_run(tmp_path):
    main(["locality", "--untrained", "vanilla", "transnormer_t2", "--length", "48", "--d-model", "16",
          "--n-heads", "2", "--batches", "1", "--out", str(tmp_path)])
    curves = pd.read_csv(tmp_path / "locality.csv")
    assert set(curves["label"]) == {"vanilla (untrained)", "transnormer_t2 (untrained)"}
    assert (tmp_path / "locality.png").exists()
