"""Everything about a run in one directory: args.json, metrics.csv (one row per epoch) and
TensorBoard events. Only the main process writes; other ranks get a logger that does nothing."""
import csv
import json
import os
from typing import Dict, Optional


class RunLogger:
    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool):
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: optional at run time

            self.writer = SummaryWriter(log_dir=run_dir)

    def save_args(self, args: Dict) -> None:
        if self.enabled:
            self.write_json("args.json", args)

    def write_json(self, name: str, payload: Dict) -> None:
        if not self.enabled:
            return
        tmp = os.path.join(self.run_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, os.path.join(self.run_dir, name))

    def log_epoch(self, row: Dict) -> None:
        """Append one row to metrics.csv (header on first write) and the scalars to TensorBoard."""
        if not self.enabled:
            return
        path = os.path.join(self.run_dir, "metrics.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.scalars(row, step=int(row["epoch"]))

    def scalars(self, values: Dict, step: int, prefix: Optional[str] = None) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if key != "epoch" and isinstance(value, (int, float)):
                name = key.replace("_", "/", 1) if prefix is None else f"{prefix}/{key}"
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
