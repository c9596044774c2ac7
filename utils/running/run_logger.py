"""Everything about a run in one directory: args.json, metrics.csv (one row per epoch, appended) and
TensorBoard events. Only the main process writes; other ranks get a logger that does nothing. JSON files are
replaced atomically and rows appended whole (running/files.py), so a crash never leaves half a file."""
import contextlib
import csv
import io
import os
from typing import Dict, List, Optional

from ..errors import RunError, UserError
from .files import OutputWriteError, append_text, write_json


METRICS_NAME = "metrics.csv"


def _epoch_of(row: Dict[str, str]) -> Optional[int]:
    try:
        return int(row.get("epoch", ""))
    except ValueError:
        return None


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

    def _metrics_path(self) -> str:
        return os.path.join(self.run_dir, METRICS_NAME)

    def rows(self) -> List[Dict[str, str]]:
        """metrics.csv's rows (none before the first epoch)."""
        try:
            with open(self._metrics_path(), newline="") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        # A line a crash left half written is no row (the next append removes it).
        return list(csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1])))

    def has_row(self, epoch: int) -> bool:
        return any(_epoch_of(row) == epoch for row in self.rows())

    def best_val_top1(self, before: int) -> float:
        """The best validation top-1 of the epochs before `before` in metrics.csv (0 if none)."""
        values = [float(row["val_top1"]) for row in self.rows()
                  if _epoch_of(row) is not None and _epoch_of(row) < before and row.get("val_top1")]
        return max(values, default=0.0)

    def log_epoch(self, row: Dict) -> None:
        """Append one row to metrics.csv (the header first, in a new file) and the scalars to TensorBoard."""
        if not self.enabled:
            return
        path = self._metrics_path()
        header = None
        if os.path.exists(path):
            with open(path, newline="") as f:
                first = f.readline()
            # A header a crash left half written is removed by append_text: write it again.
            header = next(csv.reader([first]), None) if first.endswith("\n") else None
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header or list(row), extrasaction="ignore",
                                lineterminator="\n")
        if header is None:
            writer.writeheader()
        writer.writerow(row)
        append_text(path, text.getvalue())
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
