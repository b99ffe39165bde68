"""Graceful stops: a run asked to stop checkpoints at the next update boundary and exits, resumable.

SLURM and Kubernetes send SIGTERM before they preempt or cancel a job (SLURM then waits ``GraceTime`` before
SIGKILL), a terminal sends SIGINT, and ``sbatch --signal=B:USR1@120`` sends SIGUSR1 before the time limit. While
:func:`handling_stop_signals` is active each of them only sets a flag; the trainer reads it after every update
(``harness.trainer``), saves a checkpoint and raises :class:`RunInterrupted`; ``harness.run`` marks the record
``interrupted`` with the reason and the process exits with :data:`EXIT_INTERRUPTED`. Starting the same command
again resumes exactly where it stopped.

A handler that was installed before ours (submitit's, which requeues a SLURM job on its preemption signal) is
called by :func:`run_previous_handlers` once the checkpoint is written, so a requeue never loses an update.
Repeated signals do not cut the checkpoint short: SIGKILL stops a process at once, and a SIGKILLed run resumes
from its last periodic checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL (sysexits.h): "try again later", as a requeue or a rerun does
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
# submitit's preemption / pre-timeout signal: taken over only when submitit handles it (its handler requeues)
CHAINED_ONLY = ("SIGUSR2",)

_requested: str | None = None  # the first stop signal's description; process-wide, never reset
_received: list[signal.Signals] = []  # every distinct stop signal received, in order
_chained: dict[signal.Signals, Any] = {}  # the Python handlers ours replaced (submitit's), to call after a stop


class RunInterrupted(Exception):
    """The run stopped on request after checkpointing; rerunning the same command resumes it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def requested() -> str | None:
    """Why this process was asked to stop (e.g. ``"SIGTERM"``), or None."""
    return _requested


def note_request(name: str) -> None:
    """Record a stop request that arrived by other means than a signal (a sweep that was stopped)."""
    global _requested
    if _requested is None:
        _requested = name


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _requested
    number = signal.Signals(signum)
    if number not in _received:
        _received.append(number)
    if _requested is None:
        _requested = number.name
        log.warning("%s received: stopping at the next update boundary after a checkpoint "
                    "(send SIGKILL to stop at once)", number.name)
    else:
        log.warning("%s received: already stopping (%s)", number.name, _requested)


def _python_handler(handler: Any) -> bool:
    """A handler to call after the checkpoint: Python's own, ours and a sweep parent's (``chain = False``)
    are not."""
    return (callable(handler) and handler not in (signal.default_int_handler, _on_signal)
            and getattr(handler, "chain", True))


def _install() -> dict[signal.Signals, Any]:
    """Our handler for the stop signals (and submitit's signal where submitit handles it); the previous ones."""
    installed: dict[signal.Signals, Any] = {}
    for name in STOP_SIGNALS + CHAINED_ONLY:
        number = getattr(signal, name, None)
        if number is None:
            continue
        previous = signal.getsignal(number)
        if name in CHAINED_ONLY and not _python_handler(previous):
            continue
        installed[number] = previous
        signal.signal(number, _on_signal)
        if _python_handler(previous):
            _chained[number] = previous
    return installed


@contextlib.contextmanager
def handling_stop_signals() -> Iterator[None]:
    """Turn the stop signals into a flag for the duration of a run (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = _install()
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)


def handle_stop_signals_from_now_on() -> None:
    """For a sweep's worker process: a stop signal between two cells only sets the flag (the next cell does
    not start) instead of killing the worker, which would take its busy siblings down with it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is not _on_signal:
        _install()


def run_previous_handlers() -> None:
    """Call the handlers ours replaced for the signals received (submitit's requeue), now that the run is safe
    and its outcome written. They may exit the process; that is their purpose."""
    for number in list(_received):
        handler: Callable[[int, FrameType | None], Any] | None = _chained.get(number)
        if handler is not None:
            log.info("passing %s on to the handler installed before the run's", number.name)
            handler(int(number), None)


def clear() -> None:
    """Forget a stop request (for code that embeds runs in a longer-lived process, and for tests)."""
    global _requested
    _requested = None
    _received.clear()
