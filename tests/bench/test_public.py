"""The kernel benchmark's --against public mode: the sweep end to end against torch's MultiheadAttention (always
installed), an implementation that is not installed, bad input, and, where the optional packages are installed,
that the adapters give the public modules our weights (the same outputs)."""
from __future__ import annotations

import csv
import dataclasses

import pytest

from harness.bench import public
from harness.bench.cli import main
from tests.conftest import requires_extra

TINY = ["kernels", "--against", "public", "--lengths", "48", "--repeats", "3", "--warmup", "0", "--threads", "1"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_vanilla_against_torch_multihead_attention(tmp_path):
    out = tmp_path / "public.csv"
    assert main([*TINY, "--backends", "vanilla", "--out", str(out)]) == 0
    rows = read(out)
    assert [(r["public"], r["mode"], r["n"]) for r in rows] == [
        ("torch.nn.MultiheadAttention", "causal", "48"), ("torch.nn.MultiheadAttention", "bidirectional", "48")]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["same_output"] == "yes", row  # the adapter copied our q/k/v/out weights into theirs
        low, median, high = (float(row[k]) for k in ("ratio_min", "ratio_median", "ratio_max"))
        assert 0 < low <= median <= high and row["threads"] == "1"
    text = (tmp_path / "public.md").read_text()
    assert "| vanilla | torch.nn.MultiheadAttention | causal | 48 |" in text and "OpenMP wait policy" in text


def test_an_implementation_not_installed_is_listed_with_its_install_command(tmp_path, monkeypatch):
    missing = dataclasses.replace(public.find_public("fast-transformers"), import_name="no_such_package_here")
    monkeypatch.setattr(public, "PUBLIC", (missing,))
    out = tmp_path / "public.csv"
    assert main([*TINY, "--backends", "elu", "--modes", "causal", "--out", str(out)]) == 0
    (row,) = read(out)
    assert row["status"] == "not installed" and row["error"] == "pip install pytorch-fast-transformers"


def test_bad_input_says_what_would_be_right(tmp_path, capsys):
    assert main([*TINY, "--backends", "norm_attention", "--out", str(tmp_path / "p.csv")]) == 2
    assert "backends with one: ['cosformer', 'elu'" in capsys.readouterr().err
    assert main(["kernels", "--public-path", str(tmp_path), "--out", str(tmp_path / "k.csv")]) == 2
    assert "only used with --against public" in capsys.readouterr().err


@pytest.mark.parametrize("name, module", [("performer-pytorch", "performer_pytorch"),
                                          ("fast-transformers", "fast_transformers")])
def test_adapters_share_our_weights(name, module):
    """performer-pytorch differs by design (an epsilon added to every feature, a global key maximum), so only
    closeness is asked of it; fast-transformers computes exactly our 1+elu attention."""
    requires_extra("public", module)
    for mode in ("causal", "bidirectional"):
        result = public.measure_pair(public.PairSpec(name, mode, 40, heads=2, head_dim=16, warmup=0, repeats=1))
        bound = 0.5 if name == "performer-pytorch" else 1e-5
        assert result["max_relative_difference"] < bound, (mode, result)
