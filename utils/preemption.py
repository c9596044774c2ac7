"""Graceful stop on SIGTERM, SIGINT or SIGUSR1 (cluster preemption, Ctrl-C).

The first signal asks the training loop to finish its current step and write a resumable
checkpoint; a second one exits at once (checkpoint writes are atomic, so the files on disk stay
loadable). Under DDP the ranks agree on the step to stop at through an all-reduce.
"""
import os
import signal
import sys

import torch
import torch.distributed as dist

STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None)


class StopRequest:
    def __init__(self):
        self.signal_name = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            print(f"\n=> second signal ({name}): exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signal_name = name
        print(f"\n=> {name} received: finishing this step, then saving a resumable checkpoint "
              "(send it again to exit at once)", file=sys.stderr, flush=True)

    def install(self) -> "StopRequest":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
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
