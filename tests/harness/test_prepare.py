"""Data prepared before training: ``python -m harness.prepare`` fills the cache a run then only reads, one process
at a time per cache folder."""
from __future__ import annotations

import threading
import time

from harness import prepare as prepare_module
from harness.compose import compose
from harness.config import validate


def test_prepare_fills_the_cache_a_run_reads(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert prepare_module.main(["task=lm", "scale=smoke", f"task.data.cache_dir={cache}"]) == 0
    assert "prepared: task=lm" in capsys.readouterr().out
    assert list(cache.glob("lm-builtin-*")) and (cache / prepare_module.LOCK_FILE).exists()
    assert prepare_module.main(["task=lm", "scale=smoke", "trainer.lr=-1"]) == 2  # a wrong config says so


def test_the_cache_lock_lets_one_process_prepare_at_a_time(tmp_path):
    inside, overlaps = [], []

    def hold():
        with prepare_module.cache_lock(tmp_path):
            overlaps.append(len(inside))
            inside.append(1)
            time.sleep(0.2)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(3)]  # flock excludes open files, threads included
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [0, 0, 0]
    cfg = validate(compose(["task=lm", "scale=smoke", f"task.data.cache_dir={tmp_path / 'c'}"]))
    assert prepare_module.prepare(cfg).num_examples("train") > 0
