"""Fault points: named places where a test can have the process killed with SIGKILL.

``ATTENTION_ZOO_FAULT="SITE:PATTERN@N"`` kills the process the N-th time (default 1) it reaches a fault point
of that site whose name matches the glob PATTERN, e.g. ``replace:step_*.pt@2`` (the second step checkpoint,
written but not yet renamed onto its name) or ``evaluate:test`` (during the test evaluation). Unset, a fault
point costs one dictionary look-up. The crash-consistency tests (tests/harness/test_faults.py) use them to
kill runs at chosen points, the way a power cut or an OOM killer would: no exception, no clean-up.
``ATTENTION_ZOO_FAULT_SIGNAL=SIGSTOP`` pauses the process there instead (a live writer that holds its run),
``SIGTERM`` asks it to stop gracefully there, and ``ENOSPC`` raises the error of a full disk there.
"""
from __future__ import annotations

import errno
import fnmatch
import os
import signal

ENV = "ATTENTION_ZOO_FAULT"
SIGNAL_ENV = "ATTENTION_ZOO_FAULT_SIGNAL"
_hits: dict[str, int] = {}


def parse(spec: str) -> tuple[str, str, int]:
    """``"SITE:PATTERN@N"`` -> (site, pattern, n); a clear error for anything else."""
    target, _, count = spec.partition("@")
    site, sep, pattern = target.partition(":")
    if not site or not sep or not pattern or (count and not count.isdigit()) or count == "0":
        raise ValueError(f"{ENV}={spec!r}: expected SITE:PATTERN or SITE:PATTERN@N with N >= 1, "
                         "e.g. replace:step_*.pt@2")
    return site, pattern, int(count or 1)


def fault_point(site: str, name: str = "") -> None:
    """SIGKILL this process if ``ATTENTION_ZOO_FAULT`` names this point and this is the chosen visit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want_site, pattern, n = parse(spec)
    if site != want_site or not fnmatch.fnmatchcase(name, pattern):
        return
    _hits[spec] = _hits.get(spec, 0) + 1
    if _hits[spec] == n:
        action = os.environ.get(SIGNAL_ENV, "SIGKILL")
        if action == "ENOSPC":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.kill(os.getpid(), getattr(signal, action))
