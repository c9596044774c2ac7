"""Learning-rate schedules as a torch.optim.lr_scheduler.LambdaLR stepped once per training step.

The rate is a pure function of the (fractional) epoch, so a resumed run sets exactly the lr the
uninterrupted run had, and a changed --lr or --epochs takes effect on resume:

step:   lr * gamma ** (epoch // lr_step)   official ResNet recipe (0.1, /10 every 30 epochs)
exp:    lr * gamma ** epoch                official MobileNetV2 recipe (0.045 x 0.98 per epoch)
cosine: lr * (1 + cos(pi * t / T)) / 2     per step, reaching 0 at the last epoch
Warm-up ramps linearly, per step, from 0 (or from --lr-warmup-decay x lr) over `warmup_epochs`, then hands
over to the schedule.
"""
import math
import warnings
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config.sections import ScheduleSettings


@dataclass(frozen=True)
class LrSchedule:
    """A schedule's settings with the rate they start from (--lr) and the run's length (--epochs)."""
    settings: ScheduleSettings
    lr: float
    epochs: int


def lr_at(schedule: LrSchedule, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of `step` in `epoch`."""
    settings, lr = schedule.settings, schedule.lr
    t = epoch + step / max(1, steps_per_epoch)
    if settings.warmup_epochs > 0 and t < settings.warmup_epochs:
        ramp = t + 1.0 / max(1, steps_per_epoch)
        if settings.lr_warmup_decay:  # from that fraction of lr, as torchvision's linear warm-up
            start = settings.lr_warmup_decay
            return lr * (start + (1.0 - start) * ramp / settings.warmup_epochs)
        return lr * ramp / settings.warmup_epochs
    if settings.lr_schedule == "step":
        return lr * settings.lr_gamma ** (epoch // settings.lr_step)
    if settings.lr_schedule == "exp":
        return lr * settings.lr_gamma ** epoch
    span = max(1e-8, schedule.epochs - settings.warmup_epochs)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (t - settings.warmup_epochs) / span)))


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LrSchedule, steps_per_epoch: int,
                    start: int = 0) -> LambdaLR:
    """A LambdaLR over global steps (epoch * steps_per_epoch + step), positioned at global step `start` and
    stepped after every training step. Its lambda is a closure, so its state_dict (saved in checkpoints)
    holds the position and rates, never code; a resumed run is positioned from its checkpoint's epoch and
    step, with the rates of its own configuration."""
    def rate(global_step: int) -> float:
        epoch, step = divmod(global_step, max(1, steps_per_epoch))
        return lr_at(schedule, epoch, step, steps_per_epoch)

    # LambdaLR multiplies a base rate by the lambda; with a base of 1 the lambda gives the rate itself,
    # computed by one formula (as it always was: checkpoints of earlier runs stay reproducible bit for bit).
    # Set explicitly, since a schedule that starts mid-run must be told its base.
    for group in optimizer.param_groups:
        group["initial_lr"] = 1.0
    # The factor depends on the step count only, so a step whose update was skipped (a non-finite loss,
    # fp16 overflow) shifts nothing; torch's warning about that order does not apply here.
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
    return LambdaLR(optimizer, rate, last_epoch=start - 1)
