"""Stop signals that arrive while the entry point is still importing torch and building the run.

A training process must not die of a SIGTERM (a time limit, a preemption) that arrives before its real
handler exists (preemption.StopRequest, installed once the configuration is settled): the entry points call
`remember_stop_signals()` first thing, before the heavy imports, and StopRequest takes over any signal
remembered here, so the run stops at its first step boundary with a resumable checkpoint. This module
imports nothing heavy (no torch), so it can run first.
"""
import signal
import time
from typing import Optional, Tuple

SIGNAL_NAMES = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")
_received = []  # [(signal number, time.monotonic())], at most one


def _remember(signum, _frame) -> None:
    if not _received:
        _received.append((signum, time.monotonic()))


def remember_stop_signals() -> None:
    for name in SIGNAL_NAMES:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _remember)


def received() -> Optional[Tuple[int, float]]:
    """The first stop signal remembered before the run's own handler, with its arrival time, or None."""
    return _received[0] if _received else None
