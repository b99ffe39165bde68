"""Peak memory of a measurement, above a baseline taken after setup.

CPU (Linux): the process's peak resident set size (``VmHWM`` in /proc/self/status) minus its resident size
(``VmRSS``) at the baseline. Writing "5" to /proc/self/clear_refs resets the peak to the current resident
size, so the set-up's own transients (imports, building the module) are not counted. Where that reset is
refused, the peak since process start is used instead (an upper bound; the method says so).
CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory allocated at
the baseline (tensors only, not the caching allocator's reserve).
"""
from __future__ import annotations

import gc

import torch

MIB = 2**20


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field} line")


class PeakMemory:
    """``reset()`` at the baseline, then ``peak_mib()``: the peak above it. ``method`` names the measure."""

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline_bytes = 0
        self.method = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current VmRSS
        except OSError:
            self.method = "cpu_peak_rss_since_start"
        self.baseline_bytes = _proc_status_kib("VmRSS") * 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status_kib("VmHWM") * 1024
        return max(0, peak - self.baseline_bytes) / MIB
