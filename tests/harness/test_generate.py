"""Generation from a trained run: the recurrent path samples, ``--check`` agrees with the parallel forward."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness.generate import generate, load_run, main, sample
from harness.run import execute


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
