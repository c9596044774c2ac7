"""Everything about a run in one directory: args.json, metrics.csv (one row per epoch) and TensorBoard
events. Only the main process writes; other ranks get a logger that does nothing. Files are replaced
atomically (utils/files.py), so a crash never leaves half a CSV or half a JSON."""
import contextlib
import csv
import io
import os
from typing import Dict, Optional

from .errors import RunError, UserError
from .files import OutputWriteError, atomic_write, write_json


class RunLogger:
    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool):
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: optional at run time

            with self._tensorboard():
                self.writer = SummaryWriter(log_dir=run_dir)

    @contextlib.contextmanager
    def _tensorboard(self):
        """TensorBoard writes from a thread of its own and reports a failed write (a full disk) at a later
        call, with whatever exception its writer raised: one error naming the folder."""
        try:
            yield
        except (UserError, RunError):
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise OutputWriteError(f"cannot write TensorBoard events in {self.run_dir} ({reason}); the checkpoints "
                                   "there are intact: free space, or resume with --no-tensorboard") from None

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.writer is not None:
            with self._tensorboard():
                self.writer.add_scalar(name, value, step)

    def histogram(self, name: str, values, step: int) -> None:
        if self.writer is not None:
            with self._tensorboard():
                self.writer.add_histogram(name, values, step)

    def write_json(self, name: str, payload: Dict) -> None:
        if self.enabled:
            write_json(os.path.join(self.run_dir, name), payload)

    def log_epoch(self, row: Dict) -> None:
        """Add one row to metrics.csv (header first) and the scalars to TensorBoard."""
        if not self.enabled:
            return
        path = os.path.join(self.run_dir, "metrics.csv")
        previous = ""
        if os.path.exists(path):
            with open(path, newline="") as f:
                previous = f.read()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(row))
        if not previous:
            writer.writeheader()
        writer.writerow(row)
        with atomic_write(path, "w", newline="") as f:
            f.write(previous + text.getvalue())
        self.scalars(row, step=int(row["epoch"]))

    def scalars(self, values: Dict, step: int, prefix: Optional[str] = None) -> None:
        for key, value in values.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.scalar(key.replace("_", "/", 1) if prefix is None else f"{prefix}/{key}", value, step)
        if self.writer is not None:
            with self._tensorboard():
                self.writer.flush()  # once per epoch: a full disk shows here, not days later

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            with self._tensorboard():
                writer.close()
