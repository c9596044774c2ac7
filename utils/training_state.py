"""Everything that changes as a run trains, kept together and saved and restored together: the model
(and the wrapped module the loop calls), optimizer, learning-rate schedule and loss scaler."""
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from models import CheckpointError, WeightsFile

from .config import LoopSettings, RunConfig
from .distributed import DistContext
from .model_setup import build_model, wrap_model
from .numerics import Numerics
from .schedule import build_scheduler


@dataclass
class TrainState:
    model: nn.Module            # unwrapped: what checkpoints hold
    runner: nn.Module           # DDP / DataParallel / torch.compile around `model`: what the loop calls
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    numerics: Numerics
    criterion: nn.Module

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> Dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, checkpoint: Dict[str, Any], path: str) -> None:
        """Optimizer and scaler of a checkpoint (the weights are loaded when the model is built; the
        schedule is positioned when it is built)."""
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"--resume {path!r}: optimizer state does not fit ({exc}); to start a new "
                                  "run from its weights use --pretrained instead") from None
        if checkpoint.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])


def make_criterion(loop: LoopSettings, device: torch.device) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=loop.label_smoothing).to(device)


def build_train_state(config: RunConfig, ctx: DistContext, weights: Optional[WeightsFile], steps_per_epoch: int,
                      start: int = 0) -> TrainState:
    """The model (checkpoint weights loaded), wrapped for this process; with training settings, the SGD
    optimizer (state restored on --resume) and the schedule positioned at global step `start`."""
    model = build_model(config.model, weights)
    runner = wrap_model(model, ctx, config.numerics, config.launch, training=not config.evaluate)
    numerics = Numerics(config.numerics)
    optim = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    criterion = make_criterion(config.loop, ctx.device)
    state = TrainState(model, runner, optimizer, None, numerics.grad_scaler(), numerics, criterion)
    if config.resume and weights is not None:
        state.load_state_dict(weights.checkpoint, weights.path)
    state.scheduler = build_scheduler(optimizer, config.schedule, steps_per_epoch, start)
    return state
