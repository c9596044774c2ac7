"""The epoch loop of a training run: train, evaluate, checkpoint, log, and stop cleanly on a signal with
a resumable mid-epoch checkpoint."""
import math
import os
import random
import sys

import torch

from . import checkpoint as ckpt
from .attention_insight import log_attention
from .config import RunConfig
from .data import Data
from .distributed import DistContext, say
from .engine import EpochPlan, NonFiniteLossError, evaluate, train_one_epoch
from .preemption import StopRequest
from .run_logger import RunLogger
from .training_state import TrainState


def seed_everything(seed: int, epoch: int) -> None:
    """Reseed at every epoch start: the epoch's randomness then depends on (seed, epoch) only, so a
    resumed run repeats exactly what the uninterrupted one did."""
    torch.manual_seed(seed * 1000003 + epoch)
    random.seed(seed * 1000003 + epoch)


def fit(state: TrainState, data: Data, config: RunConfig, ctx: DistContext, logger: RunLogger,
        start: ckpt.Position) -> int:
    """Train from `start` to the last epoch; returns the exit code."""
    run_dir, loop = config.output.run_dir, config.loop
    best, start_step = start.best, start.step
    stop = StopRequest().install()
    should_stop = stop.checker(ctx.distributed, ctx.device, loop.print_freq)
    say(f"=> training epochs {start.epoch}-{loop.epochs - 1}, {data.steps_per_epoch} steps each; "
        "SIGTERM, SIGINT or SIGUSR1 stops after the current step with a resumable checkpoint")
    try:
        for epoch in range(start.epoch, loop.epochs):
            seed_everything(config.seed, epoch)
            data.train_loader.sampler.set_epoch(epoch, skip=start_step * config.data.per_process_batch)
            data.train_loader.dataset.set_epoch(epoch)
            plan = EpochPlan(epoch, start_step, data.steps_per_epoch)
            result = train_one_epoch(state, data.train_loader, data.stage, loop, plan, should_stop)
            start_step = 0
            if not result.completed:
                position = ckpt.Position(epoch, result.steps_done, best)
                return _stop_for_signal(stop, ckpt.payload(state, config, position), run_dir, ctx,
                                        f"epoch {epoch} step {result.steps_done}")
            _report_epoch_faults(result, epoch)
            val, _ = evaluate(state.runner, data.val_loader, data.stage, state.numerics, state.criterion, loop.progress)
            if not math.isfinite(val["loss"]):
                # The last update can break the weights after the last training loss was read.
                raise NonFiniteLossError(f"validation loss is {val['loss']} after epoch {epoch} (lr {result.lr:.4g}): "
                                         "the weights diverged; lower --lr or add --warmup-epochs; the checkpoints "
                                         "written before stay as they were")
            # The first epoch is the best so far even at 0% top-1: model_best.pth.tar always exists.
            is_best = val["top1"] > best or not os.path.exists(os.path.join(run_dir, ckpt.BEST_NAME))
            best = max(best, val["top1"])
            if ctx.is_main:
                ckpt.save(ckpt.payload(state, config, ckpt.Position(epoch + 1, 0, best)), run_dir, is_best)
                _log_epoch(logger, epoch, result, val)
                if config.output.log_attention:
                    log_attention(logger.writer, state.model, data.first_val_batch(64).images, epoch)
            if stop.requested and epoch + 1 < loop.epochs:
                return _stop_for_signal(stop, None, run_dir, ctx, f"the end of epoch {epoch}")
    finally:
        stop.uninstall()
    say(f"=> done: best Prec@1 {best:.3f}; checkpoints in {run_dir}")
    return 0


def _report_epoch_faults(result, epoch: int) -> None:
    if result.skipped_images:
        say(f"=> epoch {epoch}: skipped {result.skipped_images} unreadable images (named in the warnings above)")
    if result.nonfinite_steps:
        say(f"=> epoch {epoch}: skipped {result.nonfinite_steps} steps with a non-finite loss (--skip-nonfinite)")


def _log_epoch(logger: RunLogger, epoch: int, result, val) -> None:
    row = {"epoch": epoch, "lr": result.lr, "train_loss": result.metrics["loss"],
           "train_top1": result.metrics["top1"], "val_loss": val["loss"], "val_top1": val["top1"],
           "val_top5": val["top5"], "train_img_s": round(result.images_per_s, 1),
           "epoch_time_s": round(result.seconds, 2), "skipped_images": result.skipped_images}
    logger.log_epoch(row)
    say(f"Epoch {epoch}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f} | "
          f" * Prec@1 {val['top1']:.3f} Prec@5 {val['top5']:.3f} | lr {result.lr:.4g} | "
          f"{row['train_img_s']:.0f} img/s | {row['epoch_time_s']:.1f}s")


def _stop_for_signal(stop: StopRequest, checkpoint, run_dir: str, ctx: DistContext, where: str) -> int:
    """Save the mid-epoch state (if any), say how to resume, and end the run successfully."""
    path = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    if ctx.is_main:
        if checkpoint is not None:
            ckpt.save(checkpoint, run_dir, is_best=False)
        say(f"=> stopped by {stop.signal_name or 'a signal on another rank'} at {where}; checkpoint: {path}\n"
            f"=> resume with: {resume_command(path)}", flush=True)
    return 0


def resume_command(path: str) -> str:
    """This run's command line with --resume pointing at `path` (an earlier --resume replaced)."""
    argv, out, skip = list(sys.argv), [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if arg.startswith("--resume="):
            continue
        out.append(arg)
    launcher = "torchrun --nproc_per_node=N" if "WORLD_SIZE" in os.environ else "python"
    return " ".join([launcher, argv[0], "--resume", path, *out])
