"""The epoch loop of a training run: train, evaluate, checkpoint, log, and stop cleanly on a signal with
a resumable mid-epoch checkpoint."""
import os
import random
import sys
from dataclasses import dataclass

import torch

from . import checkpoint as ckpt
from .attention_insight import log_attention
from .config import RunConfig
from .data import Data
from .distributed import DistContext, all_agree, any_process, say
from .engine import EpochPlan, EvalOptions, NonFiniteLossError, evaluate, train_one_epoch
from .errors import RunError
from .preemption import StopRequest
from .run_logger import RunLogger
from .training_state import TrainState


def seed_everything(seed: int, epoch: int) -> None:
    """Reseed at every epoch start: the epoch's randomness then depends on (seed, epoch) only, so a
    resumed run repeats exactly what the uninterrupted one did."""
    torch.manual_seed(seed * 1000003 + epoch)
    random.seed(seed * 1000003 + epoch)


@dataclass(frozen=True)
class Outcome:
    """How a training run ended, in one line (also in the run folder's status.json)."""
    state: str     # finished, stopped (resumable) or failed
    message: str


def fit(state: TrainState, data: Data, config: RunConfig, ctx: DistContext, logger: RunLogger,
        start: ckpt.Position, stop: StopRequest) -> Outcome:
    """Train from `start` to the last epoch, or until `stop` (installed by the caller) is requested."""
    run_dir, loop = config.output.run_dir, config.loop
    best, start_step = start.best, start.step
    should_stop = stop.checker(ctx.distributed, ctx.device, loop.print_freq)
    say(f"=> training epochs {start.epoch}-{loop.epochs - 1}, {data.steps_per_epoch} steps each; "
        "SIGTERM, SIGINT, SIGUSR1 or SIGHUP stops after the current step with a resumable checkpoint")
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
        _check_finite_weights(state, epoch, result.lr)
        # The trained epoch is on disk before validation runs: a validation failure loses nothing.
        if ctx.is_main:
            ckpt.save(ckpt.payload(state, config, ckpt.Position(epoch + 1, 0, best)), run_dir, is_best=False)
        val, _ = evaluate(state.evaluator, data.val_loader, data.stage, state.numerics, state.criterion,
                          EvalOptions(show_progress=loop.progress))
        _report_validation(epoch, val)
        if state.ema is not None:  # the moving average, evaluated beside the model
            ema, _ = evaluate(state.ema.module, data.val_loader, data.stage, state.numerics, state.criterion,
                              EvalOptions(show_progress=loop.progress))
            say(f"EMA: Prec@1 {ema['top1']:.3f} Prec@5 {ema['top5']:.3f}\tLoss {ema['loss']:.4f}")
            val = {**val, **{f"ema_{key}": ema[key] for key in ("loss", "top1", "top5")}}
        # The first epoch is the best so far even at 0% top-1: model_best.pth.tar always exists.
        is_best = val["top1"] > best or not os.path.exists(os.path.join(run_dir, ckpt.BEST_NAME))
        best = max(best, val["top1"])
        if ctx.is_main:
            if is_best:  # the same checkpoint, now knowing it is the best (best_prec1 updated)
                ckpt.save(ckpt.payload(state, config, ckpt.Position(epoch + 1, 0, best)), run_dir, is_best=True)
            _log_epoch(logger, epoch, result, val)
            if config.output.log_attention:
                log_attention(logger, state.model, data.first_val_batch(64).images, epoch)
        if any_process(stop.requested, ctx.device) and epoch + 1 < loop.epochs:
            return _stop_for_signal(stop, None, run_dir, ctx, f"the end of epoch {epoch}")
    outcome = Outcome("finished", f"done: best Prec@1 {best:.3f}; checkpoints in {run_dir}")
    say(f"=> {outcome.message}")
    return outcome


def _check_finite_weights(state: TrainState, epoch: int, lr: float) -> None:
    """The last update can break the weights after the last training loss was read: such weights must not
    replace the checkpoint of the previous epoch."""
    finite = torch.stack([torch.isfinite(p).all() for p in state.model.parameters()]).all()
    if not bool(finite):
        raise NonFiniteLossError(f"the weights are not finite after epoch {epoch} (lr {lr:.4g}): the training "
                                 "diverged; lower --lr or add --warmup-epochs; the checkpoints written before stay "
                                 "as they were")


def _report_epoch_faults(result, epoch: int) -> None:
    if result.skipped_images:
        say(f"=> epoch {epoch}: skipped {result.skipped_images} unreadable images (named in the warnings above)")
    if result.nonfinite_steps:
        say(f"=> epoch {epoch}: skipped {result.nonfinite_steps} steps with a non-finite loss (--skip-nonfinite)")


def _report_validation(epoch: int, val) -> None:
    """A line per validation, then the official result line on a line of its own."""
    left_out = f", {val['skipped']} unreadable images left out" if val["skipped"] else ""
    say(f"Val: [{epoch}] {val['count']} images{left_out}\tLoss {val['loss']:.4f}\t"
        f"{val['images_per_s']:.0f} img/s\t{val['seconds']:.1f}s")
    say(f" * Prec@1 {val['top1']:.3f} Prec@5 {val['top5']:.3f}", flush=True)


def _log_epoch(logger: RunLogger, epoch: int, result, val) -> None:
    row = {"epoch": epoch, "lr": result.lr, "train_loss": result.metrics["loss"],
           "train_top1": result.metrics["top1"], "val_loss": val["loss"], "val_top1": val["top1"],
           "val_top5": val["top5"], "train_img_s": round(result.images_per_s, 1),
           "epoch_time_s": round(result.seconds, 2), "skipped_images": result.skipped_images}
    row.update({f"ema_val_{key[4:]}": value for key, value in val.items() if key.startswith("ema_")})
    logger.log_epoch(row)
    say(f"Epoch {epoch}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f} | val loss "
        f"{val['loss']:.4f} top1 {val['top1']:.3f} top5 {val['top5']:.3f} | lr {result.lr:.4g} | "
        f"{row['train_img_s']:.0f} img/s | {row['epoch_time_s']:.1f}s", flush=True)


def _stop_for_signal(stop: StopRequest, checkpoint, run_dir: str, ctx: DistContext, where: str) -> Outcome:
    """Save the mid-epoch state (if any), say how to resume, and end the run successfully."""
    path = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    failure = None
    if ctx.is_main and checkpoint is not None:
        try:
            ckpt.save(checkpoint, run_dir, is_best=False)
        except RunError as exc:
            failure = exc
    # No process exits before the checkpoint is on disk: launchers that end a job when its first process
    # exits (srun --kill-on-bad-exit, seeing torchrun's exit 1 after a SIGTERM) would cut the save short.
    all_agree(failure is None, ctx.device)
    if failure is not None:
        raise failure
    outcome = Outcome("stopped", f"stopped by {stop.signal_name or 'a signal on another rank'} at {where}; "
                                 f"checkpoint: {path}; resume with: {resume_command(path)}")
    say(f"=> stopped by {stop.signal_name or 'a signal on another rank'} at {where}; checkpoint: {path}\n"
        f"=> resume with: {resume_command(path)}", flush=True)
    return outcome


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
