"""A training run's folder: one run per folder, held by the live run, cleaned of what a killed run left.

A run that is not resuming refuses a folder that already holds a run (the error names --resume and
--output-dir), so it can never overwrite another run's checkpoints or mix its rows into another run's
metrics.csv. The live run holds an exclusive lock on `<folder>/.lock` (flock: the kernel releases it when
the process dies, so a crashed run's successor takes the folder over without any clean-up); a second
run on the same folder stops before writing anything.
"""
import fcntl
import os
import socket
import time
from typing import Optional

from .errors import UserError
from .files import remove_stale_temps

# Files a training run writes that show it completed an epoch (what a fresh start would overwrite)...
TRAINED_FILES = ("checkpoint.pth.tar", "model_best.pth.tar", "metrics.csv")
# ...and all that mark a folder as holding a run: a run killed before its first checkpoint leaves only these two.
RUN_FILES = TRAINED_FILES + ("args.json", "status.json")
STATUS_NAME = "status.json"  # how the last run in the folder ended: finished, stopped (resumable) or failed
LOCK_NAME = ".lock"


def _first_present(folder: str, names) -> Optional[str]:
    return next((name for name in names if os.path.exists(os.path.join(folder, name))), None)


def trained_run_file(folder: str) -> Optional[str]:
    """The first file that shows a run in `folder` completed an epoch, or None."""
    return _first_present(folder, TRAINED_FILES)


def existing_run_file(folder: str) -> Optional[str]:
    """The first file that shows `folder` holds a run, or None."""
    return _first_present(folder, RUN_FILES)


class RunFolder:
    """Holds a run folder for the life of this process (rank 0 of a training run)."""

    def __init__(self, path: str):
        self.path = path
        self._handle = None

    def claim(self) -> None:
        """Take the folder's lock or raise a UserError naming its holder; then remove temporary files a
        killed run left (only now: a live run's temporary files are its writes in progress)."""
        os.makedirs(self.path, exist_ok=True)
        handle = open(os.path.join(self.path, LOCK_NAME), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.path} is in use by another run ({holder}): wait for it to end, or give this run "
                            "its own --output-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        remove_stale_temps(self.path)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None
