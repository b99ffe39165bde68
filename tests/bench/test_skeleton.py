"""The benchmarks' shared machinery: the give-up rule, the device choice, the list options and the writers."""
import argparse

import pytest

from harness.bench.skeleton import GiveUp, int_list, read_rows, require_positive, resolve_device, write_rows


def test_a_series_gives_up_at_its_shortest_failed_length_only():
    give_up = GiveUp()
    give_up.note(("vanilla", "train"), 2048, "ok")
    give_up.note(("vanilla", "train"), 4096, "error")  # not a reason to give up: longer lengths may work
    assert give_up.skipped(("vanilla", "train"), 8192) is None
    give_up.note(("vanilla", "train"), 8192, "timeout")
    give_up.note(("vanilla", "train"), 16384, "oom")
    assert give_up.skipped(("vanilla", "train"), 4096) is None  # shorter: measured
    assert give_up.skipped(("vanilla", "train"), 8192) == {"status": "skipped", "error": "timeout at N=8192"}
    assert give_up.skipped(("vanilla", "train"), 32768) == {"status": "skipped", "error": "timeout at N=8192"}
    assert give_up.skipped(("vanilla", "inference"), 32768) is None  # another series


def test_device_and_options():
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "cuda")
    assert int_list("4096,1024,1024") == [1024, 4096]
    with pytest.raises(argparse.ArgumentTypeError):
        int_list("1024,0")
    with pytest.raises(ValueError, match="--head-dim must be a positive integer, got 0"):
        require_positive(argparse.Namespace(batch=1, head_dim=0), "batch", "head_dim")
    with pytest.raises(ValueError, match="--lengths"):
        require_positive(argparse.Namespace(lengths=[64, -1]), "lengths")


def test_rows_round_trip_through_the_csv(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    write_rows(path, [{"a": 1, "b": None, "extra": "ignored"}, {"a": 2.5, "b": "x"}], ["a", "b"])
    assert read_rows(path) == [{"a": "1", "b": ""}, {"a": "2.5", "b": "x"}]
