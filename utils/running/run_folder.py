"""A training run's folder: one run per folder, held by the live run, cleaned of what a killed run left.

A run that is not resuming refuses a folder that already holds a run (the error names --resume and
--output-dir), so it can never overwrite another run's checkpoints or mix its rows into another run's
metrics.csv. The live run holds an exclusive lock on `<folder>/.lock` (flock: the kernel releases it when
the process dies, so a crashed run's successor takes the folder over without any clean-up); a second
run on the same folder stops before writing anything.
"""
import csv
import fcntl
import os
import socket
import time
from typing import Optional

from ..errors import UserError
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


def trained_epochs(folder: str) -> int:
    """How many epochs the run in `folder` has finished, by its metrics.csv (0 if none)."""
    try:
        with open(os.path.join(folder, "metrics.csv"), newline="") as f:
            epochs = [int(row["epoch"]) for row in csv.DictReader(f) if (row.get("epoch") or "").isdigit()]
    except (OSError, KeyError, csv.Error):
        return 0
    return max(epochs, default=-1) + 1


def check_run_folder(folder: str, resume: str, resume_epoch: Optional[int], auto: bool) -> None:
    """A training run's folder must be its own: empty, or holding the run it resumes. Resuming a checkpoint
    that is behind the run in the folder (e.g. its model_best.pth.tar) would overwrite the later checkpoint
    and repeat epochs in metrics.csv, so it is refused with the file to resume from instead. `resume`: the
    checkpoint path ("" for none); `resume_epoch`: its next epoch; `auto`: the user asked --resume auto."""
    found = existing_run_file(folder)
    if not found:
        return
    if resume:
        done = trained_epochs(folder)
        if resume_epoch is not None and done > resume_epoch:
            latest = os.path.join(folder, TRAINED_FILES[0])
            raise UserError(f"{folder} has trained {done} epochs but {resume} continues from epoch {resume_epoch}: "
                            f"resuming it here would overwrite the later checkpoint; resume from {latest}, or give "
                            "this run its own --output-dir (e.g. to fine-tune from an earlier epoch)")
        if os.path.dirname(os.path.abspath(resume)) == os.path.abspath(folder):
            return
    if auto:  # the folder has no checkpoint.pth.tar (else `resume` would name it)
        trained = trained_run_file(folder)
        if trained is None:
            return  # the run there was killed before its first checkpoint: a requeued job starts it again
        raise UserError(f"--resume auto: {folder} has no checkpoint.pth.tar, but its {trained} shows that a run "
                        f"trained there; resume from a file explicitly (--resume {os.path.join(folder, trained)} "
                        "if it is a checkpoint), or give this run its own --output-dir")
    raise UserError(f"{folder} already holds a run ({found}): continue it with --resume auto, or give this run "
                    "its own --output-dir")


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
