"""Jobs of a sweep on one machine of several GPUs each take a GPU of their own (the joblib launcher would put every
job on cuda:0), waiting while all are taken; without several GPUs nothing happens."""
from __future__ import annotations

import threading

from harness import gpu_lease


def fake_gpus(monkeypatch, tmp_path, count: int) -> list[int]:
    chosen: list[int] = []
    monkeypatch.setattr(gpu_lease.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(gpu_lease.torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(gpu_lease.torch.cuda, "set_device", chosen.append)
    return chosen


def test_each_job_takes_a_free_gpu_and_gives_it_back(monkeypatch, tmp_path):
    chosen = fake_gpus(monkeypatch, tmp_path, 2)
    with gpu_lease.one_gpu_per_job(True) as first, gpu_lease.one_gpu_per_job(True) as second:
        assert (first, second) == (0, 1) and chosen == [0, 1]
        assert gpu_lease.try_lease(2) is None  # both leased: a third job waits
    with gpu_lease.one_gpu_per_job(True) as again:
        assert again == 0  # released when the job ended


def test_a_third_job_waits_for_a_gpu(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    got: list[int | None] = []
    with gpu_lease.one_gpu_per_job(True), gpu_lease.one_gpu_per_job(True) as second:
        waiter = threading.Thread(target=lambda: got.append(_lease_once()))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and not got  # still waiting
    waiter.join(5)
    assert got and got[0] in (0, 1)
    assert second == 1


def _lease_once() -> int | None:
    with gpu_lease.one_gpu_per_job(True, poll_s=0.05) as index:
        return index


def test_one_gpu_or_none_wanted_leases_nothing(monkeypatch, tmp_path):
    chosen = fake_gpus(monkeypatch, tmp_path, 1)
    with gpu_lease.one_gpu_per_job(True) as index:
        assert index is None and chosen == []
    fake_gpus(monkeypatch, tmp_path, 4)
    with gpu_lease.one_gpu_per_job(False) as index:
        assert index is None
