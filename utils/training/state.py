"""Everything that changes as a run trains, kept together and saved and restored together: the model
(and the wrapped module the loop calls), optimizer, learning-rate schedule, loss scaler and the weights'
moving average; and how each step updates them (batch mixing, gradient clipping)."""
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from models import CheckpointError, WeightsFile

from ..config.run_config import RunConfig
from ..config.sections import LoopSettings, OptimSettings
from ..running.distributed import DistContext
from .ema import ModelEma
from .mixing import BatchMixer, build_mixer
from .model_setup import build_model, wrap_model
from .numerics import Numerics
from .schedule import LrSchedule, build_scheduler


@dataclass
class TrainState:
    model: nn.Module            # unwrapped: what checkpoints hold
    runner: nn.Module           # DDP / DataParallel / torch.compile around `model`: what the loop calls
    evaluator: nn.Module        # what validation calls: `model` (DataParallel around it), never compiled
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    numerics: Numerics
    criterion: nn.Module
    ema: Optional[ModelEma] = None
    mixer: Optional[BatchMixer] = None
    clip_grad_norm: Optional[float] = None
    warmup_steps: int = 0       # global steps of the learning-rate warm-up (the average restarts during it)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> Dict[str, Any]:
        # No scheduler state: the rate is a function of the epoch and step a checkpoint holds (schedule.py).
        state = {"state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:
            state["model_ema"] = self.ema.state_dict()
        return state

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
        if self.ema is not None:
            if "model_ema" not in checkpoint:
                raise CheckpointError(f"--resume {path!r} holds no moving average (it was trained without "
                                      "--model-ema): resume without --model-ema, or start a new run with --pretrained")
            self.ema.load_state_dict(checkpoint["model_ema"])


def make_criterion(loop: LoopSettings, device: torch.device) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=loop.label_smoothing).to(device)


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def parameter_groups(model: nn.Module, optim: OptimSettings):
    """One group, or two when normalisation layers get their own weight decay (--norm-weight-decay)."""
    if optim.norm_weight_decay is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": optim.weight_decay}]
    norm_ids = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) not in norm_ids], "weight_decay": optim.weight_decay},
            {"params": [p for p in params if id(p) in norm_ids], "weight_decay": optim.norm_weight_decay}]


def build_optimizer(model: nn.Module, optim: OptimSettings) -> torch.optim.Optimizer:
    groups = parameter_groups(model, optim)
    if optim.opt == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr)
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.opt == "sgd_nesterov")


def build_train_state(config: RunConfig, ctx: DistContext, weights: Optional[WeightsFile], steps_per_epoch: int,
                      start: int = 0) -> TrainState:
    """The model (checkpoint weights loaded), wrapped for this process; the optimizer and the moving average
    (their states restored on --resume); the schedule positioned at global step `start`."""
    model = build_model(config.model, weights, config.numerics.eca_impl)
    runner, evaluator = wrap_model(model, ctx, config.numerics, config.launch, training=True)
    numerics = Numerics(config.numerics)
    state = TrainState(model, runner, evaluator, build_optimizer(model, config.optim), None, numerics.grad_scaler(),
                       numerics, make_criterion(config.loop, ctx.device), clip_grad_norm=config.optim.clip_grad_norm,
                       warmup_steps=int(config.schedule.warmup_epochs * steps_per_epoch))
    if config.ema.model_ema:
        state.ema = ModelEma(model, config.ema, config.data.batch_size, config.loop.epochs)
    state.mixer = build_mixer(config.mix, config.model.num_classes, config.run.seed, ctx.rank)
    if config.run.resume and weights is not None:
        state.load_state_dict(weights.checkpoint, weights.path)
    schedule = LrSchedule(config.schedule, config.optim.lr, config.loop.epochs)
    state.scheduler = build_scheduler(state.optimizer, schedule, steps_per_epoch, start)
    return state
