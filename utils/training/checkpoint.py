"""Training checkpoints: self-describing, written atomically, readable by the official tools.

A checkpoint keeps the official keys (`epoch` = next epoch to run, `arch`, `state_dict`, `best_prec1`,
`optimizer`) and adds what a resume reads: `step` (position in the epoch), `scaler`, `model_ema`,
`k_size`, `num_classes`, `class_names` and the resolved configuration (`args`: its seed, batch and image
count are checked on a mid-epoch resume); `epoch_totals` (a stop in the middle of an epoch: the metrics of
the steps done, so the resumed epoch's row covers all of them) or `epoch_row` (the end of an epoch: its
training metrics, so a run killed during validation still writes that epoch's row when it resumes).
`state_dict` keys carry no wrapper prefix; official files with `module.` load too (models/weights.py).

checkpoint.pth.tar is written when an epoch's training ends, before validation (a failure there loses
nothing). When validation finds the epoch the best so far, its checkpoint is serialised once more, now with
that `best_prec1`, and the same bytes become both model_best.pth.tar and checkpoint.pth.tar (as the
official code's files say, `best_prec1` then includes the epoch).
"""
import io
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from models import CheckpointError

from ..config.run_config import RunConfig
from ..running.files import atomic_write
from .state import TrainState

CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_NAME = "model_best.pth.tar"


@dataclass(frozen=True)
class Position:
    """Where a run stands: the next epoch and step to train, and the best top-1 so far; `totals` and `row`
    as saved (see the module docstring)."""
    epoch: int = 0
    step: int = 0
    best: float = 0.0
    totals: Dict[str, float] = field(default_factory=dict)
    row: Dict[str, Any] = field(default_factory=dict)


def payload(state: TrainState, config: RunConfig, position: Position) -> Dict[str, Any]:
    """The dict a checkpoint file holds."""
    out = {
        **state.state_dict(), "epoch": position.epoch, "step": position.step, "arch": config.model.arch,
        "best_prec1": position.best, "k_size": getattr(state.model, "k_size", None),
        "num_classes": config.model.num_classes, "class_names": list(config.run.class_names),
        "args": config.as_dict(),
    }
    if position.totals:
        out["epoch_totals"] = dict(position.totals)
    if position.row:
        out["epoch_row"] = dict(position.row)
    return out


def _write(checkpoint: Dict[str, Any], path: str) -> None:
    with atomic_write(path) as f:
        torch.save(checkpoint, f)


def save(checkpoint: Dict[str, Any], run_dir: str) -> str:
    """checkpoint.pth.tar, replaced atomically; returns its path."""
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    _write(checkpoint, path)
    return path


def save_best(checkpoint: Dict[str, Any], run_dir: str) -> None:
    """model_best.pth.tar and checkpoint.pth.tar from one serialisation of `checkpoint`, each replaced
    atomically."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    for name in (BEST_NAME, CHECKPOINT_NAME):
        with atomic_write(os.path.join(run_dir, name)) as f:
            f.write(buffer.getbuffer())


def _number(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def position_of(checkpoint: Dict[str, Any], path: str = "the checkpoint") -> Position:
    """Where a checkpoint stands (official files: the start of their `epoch`); nonsense there (a negative
    epoch, a step that is no count) is a CheckpointError rather than a run that trains something else."""
    values = {}
    for key in ("epoch", "step"):
        value = checkpoint.get(key, 0)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{path} says {key} = {value!r}, which is not a count of epochs or steps: the file "
                                  "was edited or written by another tool; resume from a checkpoint this project wrote")
        values[key] = value
    best = _number(checkpoint.get("best_prec1", 0.0))
    if not math.isfinite(best):
        best = 0.0
    totals = checkpoint.get("epoch_totals")
    row = checkpoint.get("epoch_row")
    return Position(values["epoch"], values["step"], best,
                    totals if isinstance(totals, dict) else {}, row if isinstance(row, dict) else {})


def start_position(checkpoint: Optional[Dict[str, Any]], start_epoch: Optional[int], path: str = "") -> Position:
    """Where a run starts: the checkpoint's position (--resume), or --start-epoch (keeping the best)."""
    position = position_of(checkpoint, path) if checkpoint is not None else Position()
    if start_epoch is not None:
        position = Position(start_epoch, 0, position.best)
    return position
