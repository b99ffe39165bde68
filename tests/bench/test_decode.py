"""The decode benchmark: each cell in its own process, the linear state constant in the context, the cache not."""
from __future__ import annotations

import pandas as pd

from harness.bench.cli import main


def test_decode_benchmark_writes_its_table_and_plot(tmp_path):
    out = tmp_path / "decode"
    assert main(["decode", "--backends", "transnormer_t2", "vanilla", "--contexts", "64,256", "--tokens", "3",
                 "--shapes", "lm", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "decode.csv")
    assert (frame["status"] == "ok").all() and len(frame) == 4
    state = frame.set_index(["backend", "context"])["state_mib"]
    assert state["transnormer_t2", 64] == state["transnormer_t2", 256]  # d x d states and one Diag block
    assert state["vanilla", 256] > 3.5 * state["vanilla", 64]  # the key/value cache grows with the context
    assert "| transnormer_t2 |" in (out / "decode.md").read_text() and (out / "decode.png").stat().st_size > 0
