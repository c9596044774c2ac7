"""Learning-rate schedules as a pure function of (fractional) epoch: nothing to save or restore,
so a resumed run sets exactly the lr the uninterrupted run would have had.

step:   lr * gamma ** (epoch // lr_step)   official ResNet recipe (0.1, /10 every 30 epochs)
exp:    lr * gamma ** epoch                official MobileNetV2 recipe (0.045 x 0.98 per epoch)
cosine: lr * (1 + cos(pi * t / T)) / 2     per step, reaching 0 at the last epoch
Warm-up ramps linearly from 0 over `warmup_epochs`, per step, then hands over to the schedule.
"""
import math


def lr_at(args, epoch: int, step: int, steps_per_epoch: int) -> float:
    t = epoch + step / max(1, steps_per_epoch)
    if args.warmup_epochs > 0 and t < args.warmup_epochs:
        return args.lr * (t + 1.0 / max(1, steps_per_epoch)) / args.warmup_epochs
    if args.lr_schedule == "step":
        return args.lr * args.lr_gamma ** (epoch // args.lr_step)
    if args.lr_schedule == "exp":
        return args.lr * args.lr_gamma ** epoch
    span = max(1e-8, args.epochs - args.warmup_epochs)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (t - args.warmup_epochs) / span)))


def describe(args) -> dict:
    """The schedule's parameters, stored in checkpoints so a run describes itself."""
    return {"name": args.lr_schedule, "lr": args.lr, "lr_step": args.lr_step, "lr_gamma": args.lr_gamma,
            "warmup_epochs": args.warmup_epochs, "epochs": args.epochs}
