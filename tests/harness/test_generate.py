"""Generation from a trained run: the recurrent path samples, ``--check`` agrees with the parallel forward."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from harness.execute import execute
from harness.generate import generate, load_run, main, sample


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from tests.harness.conftest import SMOKE, compose_config

    record = execute(compose_config(*SMOKE, f"run.root={tmp_path_factory.mktemp('runs')}", "trainer.max_steps=4",
                                    "attention=transnormer_t2"))
    return Path(record["run_dir"])


def test_generate_and_check_against_the_parallel_forward(run_dir, capsys):
    assert main([str(run_dir), "--prompt", "a b", "--max-new-tokens", "12", "--seed", "3", "--check"]) == 0
    out = capsys.readouterr().out
    difference = float(re.search(r"logit difference (\S+)", out).group(1))
    assert difference < 1e-4 and "over 12 positions" in out


def test_sampling_is_seeded_and_greedy_is_the_argmax(run_dir):
    model, task = load_run(run_dir)
    prompt = torch.tensor([[task.vocab.eos]])
    first, _ = generate(model, prompt, 8, temperature=1.0, seed=1)
    again, _ = generate(model, prompt, 8, temperature=1.0, seed=1)
    assert torch.equal(first, again)
    greedy, logits = generate(model, prompt, 8, temperature=0)
    assert torch.equal(greedy, logits.argmax(-1))
    top1 = sample(torch.tensor([[0.0, 5.0, 1.0]]), 1.0, 1, torch.Generator().manual_seed(0))
    assert top1.tolist() == [1]


def test_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a run folder"):
        main([str(tmp_path)])


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def received(run_dir, tmp_path) -> Path:
    """The run folder as someone else gets it: its record names the sender's cache, absent here."""
    copy = tmp_path / "received"
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / "record.json").read_text())
    record["config"]["task"]["data"]["cache_dir"] = str(tmp_path / "senders-cache")
    (copy / "record.json").write_text(json.dumps(record))
    return copy


def test_generation_reads_the_run_and_caches_under_the_users_own_cache(received, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTENTION_ZOO_CACHE", str(tmp_path / "mine"))
    before = _tree(received)
    assert main([str(received), "--max-new-tokens", "3"]) == 0
    assert not (tmp_path / "senders-cache").exists()  # nothing written where the record points
    assert _tree(received) == before  # the run folder is only read
    assert any((tmp_path / "mine" / "data").glob("wikitext-*.pt"))  # the data was prepared in the user's cache


def test_cache_dir_option(received, tmp_path):
    assert main([str(received), "--max-new-tokens", "2", "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    assert any((tmp_path / "elsewhere").glob("wikitext-*.pt")) and not (tmp_path / "senders-cache").exists()
