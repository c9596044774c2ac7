"""Graceful stop on SIGTERM, SIGINT, SIGUSR1 or SIGHUP (cluster preemption, time limits, Ctrl-C, a closed
terminal), and when the launcher dies.

The first signal asks the training loop to finish its current step and write a resumable checkpoint;
a second one exits at once (checkpoint writes are atomic, so the files on disk stay loadable), except
the same signal again within DUPLICATE_S seconds: schedulers and launchers can deliver one signal twice
(SLURM to every process of a step, and torchrun forwarding it too), and the duplicate must not cost the
checkpoint. Under DDP the ranks agree on the step to stop at through an all-reduce.

torchrun forwards SIGTERM, SIGINT and SIGHUP to its workers (and SIGUSR1 when asked to:
`--signals-to-handle`), waits `--shutdown-timeout` seconds (30 by default), then kills them. A signal
torchrun does not handle (SIGUSR1 by default, or SIGKILL) ends torchrun alone: its workers would train on
as orphans. So a worker started by torchrun also watches its parent process and stops, saving, once the
launcher is gone.
"""
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from . import early_stop

DUPLICATE_S = 2.0
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")
                     if hasattr(signal, name))


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


class StopRequest:
    def __init__(self):
        self.signal_name = None
        self._first = (None, 0.0)  # the first signal's number and arrival time
        self._previous = {}
        # Only a launcher's death means "stop": a plain `nohup python main.py &` outlives its shell on purpose.
        self._launcher = os.getppid() if launched_by_torchrun() else None

    @property
    def requested(self) -> bool:
        if self.signal_name is None and self._launcher is not None and os.getppid() != self._launcher:
            self.signal_name = "the launcher's exit"
        return self.signal_name is not None

    def _handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            first, when = self._first
            if signum == first and time.monotonic() - when < DUPLICATE_S:
                return  # the same signal delivered twice
            print(f"\n=> second signal ({name}): exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signal_name = name
        self._first = (signum, time.monotonic())
        print(f"\n=> {name} received: finishing this step, then saving a resumable checkpoint "
              "(send it again to exit at once)", file=sys.stderr, flush=True)

    def install(self) -> "StopRequest":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        early = early_stop.received()
        if early is not None and self.signal_name is None:  # arrived while the process was starting
            self.signal_name, self._first = signal.Signals(early[0]).name, early
            print(f"=> {self.signal_name} received while starting: stopping at the first step boundary with a "
                  "resumable checkpoint", file=sys.stderr, flush=True)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def checker(self, distributed: bool, device: torch.device, every: int):
        """A should_stop(step) callable. One process: every step. Several: every `every` steps all
        ranks reduce their flags, so they stop after the same step (signals reach them at different
        moments, and a rank that left alone would hang the others' collectives)."""
        if not distributed:
            return lambda step: self.requested

        def agree(step: int) -> bool:
            if step % every:
                return False
            flag = torch.tensor([1 if self.requested else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())

        return agree
