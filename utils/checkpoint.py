"""Training checkpoints: self-describing, written atomically, readable by the official tools.

A checkpoint keeps the official keys (`epoch` = next epoch to run, `arch`, `state_dict`, `best_prec1`,
`optimizer`) and adds what an exact resume needs: `step` (position in the epoch), `scheduler`, `scaler`,
`k_size`, `num_classes`, `class_names`, the resolved configuration (`args`) and RNG states. `state_dict`
keys carry no wrapper prefix; official files with `module.` load too (models/weights.py strips it).
"""
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Dict

import torch

from .config import RunConfig
from .files import atomic_write, copy_file
from .training_state import TrainState

CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_NAME = "model_best.pth.tar"


@dataclass(frozen=True)
class Position:
    """Where a run stands: the next epoch and step to train, and the best top-1 so far."""
    epoch: int = 0
    step: int = 0
    best: float = 0.0


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def payload(state: TrainState, config: RunConfig, position: Position) -> Dict[str, Any]:
    """The dict a checkpoint file holds."""
    return {
        **state.state_dict(), "epoch": position.epoch, "step": position.step, "arch": config.model.arch,
        "best_prec1": position.best, "k_size": getattr(state.model, "k_size", None),
        "num_classes": config.model.num_classes, "class_names": list(config.class_names),
        "args": config.as_dict(), "rng": rng_state(), "saved_at": time.time(),
    }


def save(checkpoint: Dict[str, Any], run_dir: str, is_best: bool) -> None:
    """checkpoint.pth.tar, and model_best.pth.tar when `is_best`, each replaced atomically."""
    last = os.path.join(run_dir, CHECKPOINT_NAME)
    with atomic_write(last) as f:
        torch.save(checkpoint, f)
    if is_best:
        copy_file(last, os.path.join(run_dir, BEST_NAME))


def position_of(checkpoint: Dict[str, Any]) -> Position:
    """Where a checkpoint stands (official files: the start of their `epoch`)."""
    best = checkpoint.get("best_prec1", 0.0)
    best = float(best.item() if isinstance(best, torch.Tensor) else best)
    return Position(int(checkpoint.get("epoch", 0)), int(checkpoint.get("step", 0)), best)
