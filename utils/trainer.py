"""The epoch loop of a training run: resume, train, evaluate, checkpoint, log, and stop cleanly on
a signal with a resumable mid-epoch checkpoint."""
import math
import os
import random
import sys
import time
from typing import Dict

import torch

from models import CheckpointError
from utils import checkpoint as ckpt
from utils import cli
from utils.attention_insight import log_attention
from utils.data import build_train_loader, steps_per_epoch
from utils.engine import NonFiniteLossError, evaluate, train_one_epoch
from utils.preemption import StopRequest
from utils.schedule import describe as describe_schedule


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); the previous files are intact."""


def seed_everything(seed: int, epoch: int) -> None:
    """Reseed at every epoch start: the epoch's randomness then depends on (seed, epoch) only, so a
    resumed run repeats exactly what the uninterrupted one did."""
    torch.manual_seed(seed * 1000003 + epoch)
    random.seed(seed * 1000003 + epoch)


def train(runner, model, train_set, val_loader, criterion, numerics, args, ctx, logger, checkpoint, run_dir,
          say) -> int:
    params_with_grad = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params_with_grad, args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=args.amp == "fp16")
    start_epoch, start_step, best = 0, 0, 0.0
    if args.resume and checkpoint is not None:
        start_epoch, start_step, best = _restore(checkpoint, optimizer, scaler, args)
        where = f"epoch {start_epoch}" + (f" step {start_step}" if start_step else "")
        say(f"=> resumed {args.resume}: {where}, best Prec@1 {best:.3f}")
    if args.start_epoch is not None:
        start_epoch, start_step = args.start_epoch, 0
    train_loader = build_train_loader(train_set, args, ctx)
    logger.save_args(cli.as_plain_dict(args))
    stop = StopRequest().install()
    should_stop = stop.checker(ctx.distributed, ctx.device, args.print_freq)
    say(f"=> training epochs {start_epoch}-{args.epochs - 1}, {steps_per_epoch(train_loader)} steps each; "
        "SIGTERM, SIGINT or SIGUSR1 stops after the current step with a resumable checkpoint")
    try:
        for epoch in range(start_epoch, args.epochs):
            seed_everything(args.seed, epoch)
            train_loader.sampler.set_epoch(epoch, skip=start_step * args.per_process_batch)
            train_loader.dataset.set_epoch(epoch)
            result = train_one_epoch(runner, train_loader, criterion, optimizer, scaler, numerics, args, epoch,
                                     start_step, ctx.is_main, ctx.world_size, should_stop)
            start_step = 0
            if not result.completed:
                state = _checkpoint_state(model, optimizer, scaler, args, epoch, result.steps_done, best, train_set)
                return _stop_for_signal(stop, state, run_dir, ctx, f"epoch {epoch} step {result.steps_done}")
            _report_epoch_faults(result, epoch, say)
            val, _ = evaluate(runner, val_loader, criterion, numerics, args, ctx.is_main)
            if not math.isfinite(val["loss"]):
                # The last update can break the weights after the last training loss was read.
                raise NonFiniteLossError(f"validation loss is {val['loss']} after epoch {epoch} (lr {result.lr:.4g}): "
                                         "the weights diverged; lower --lr or add --warmup-epochs; the checkpoints "
                                         "written before stay as they were")
            # The first epoch is the best so far even at 0% top-1: model_best.pth.tar always exists.
            is_best = val["top1"] > best or not os.path.exists(os.path.join(run_dir, ckpt.BEST_NAME))
            best = max(best, val["top1"])
            state = _checkpoint_state(model, optimizer, scaler, args, epoch + 1, 0, best, train_set)
            if ctx.is_main:
                _save(state, run_dir, is_best)
                _log_epoch(logger, epoch, result, val)
                if args.log_attention:
                    log_attention(logger.writer, model, _fixed_batch(val_loader, numerics), epoch)
            if stop.requested and epoch + 1 < args.epochs:
                return _stop_for_signal(stop, None, run_dir, ctx, f"the end of epoch {epoch}")
    finally:
        stop.uninstall()
    say(f"=> done: best Prec@1 {best:.3f}; checkpoints in {run_dir}")
    return 0


def _fixed_batch(val_loader, numerics) -> torch.Tensor:
    """The first validation images, in a fixed order: the same inputs every epoch."""
    dataset = val_loader.dataset
    count = min(len(dataset), val_loader.batch_size, 64)
    samples = [s for s in (dataset[i] for i in range(count)) if s is not None]
    images = torch.stack([s[0] for s in samples])
    return numerics.to_device(images, torch.zeros(len(samples)))[0]


def _report_epoch_faults(result, epoch: int, say) -> None:
    if result.skipped_images:
        say(f"=> epoch {epoch}: skipped {result.skipped_images} unreadable images (named in the warnings above)")
    if result.nonfinite_steps:
        say(f"=> epoch {epoch}: skipped {result.nonfinite_steps} steps with a non-finite loss (--skip-nonfinite)")


def _log_epoch(logger, epoch: int, result, val) -> None:
    row = {"epoch": epoch, "lr": result.lr, "train_loss": result.metrics["loss"],
           "train_top1": result.metrics["top1"], "val_loss": val["loss"], "val_top1": val["top1"],
           "val_top5": val["top5"], "train_img_s": round(result.images_per_s, 1),
           "epoch_time_s": round(result.seconds, 2), "skipped_images": result.skipped_images}
    logger.log_epoch(row)
    print(f"Epoch {epoch}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f} | "
          f" * Prec@1 {val['top1']:.3f} Prec@5 {val['top5']:.3f} | lr {result.lr:.4g} | "
          f"{row['train_img_s']:.0f} img/s | {row['epoch_time_s']:.1f}s")


def _stop_for_signal(stop: StopRequest, state, run_dir: str, ctx, where: str) -> int:
    """Save the mid-epoch state (if any), say how to resume, and end the run successfully."""
    path = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    if ctx.is_main:
        if state is not None:
            _save(state, run_dir, is_best=False)
        print(f"=> stopped by {stop.signal_name or 'a signal on another rank'} at {where}; checkpoint: {path}\n"
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


def _restore(checkpoint, optimizer, scaler, args):
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"--resume {args.resume!r}: optimizer state does not fit ({exc}); to start a new "
                              "run from its weights use --pretrained instead") from None
    if checkpoint.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    best = checkpoint.get("best_prec1", 0.0)
    best = float(best.item() if isinstance(best, torch.Tensor) else best)
    return int(checkpoint.get("epoch", 0)), int(checkpoint.get("step", 0)), best


def _checkpoint_state(model, optimizer, scaler, args, epoch, step, best, train_set) -> Dict:
    return {
        "epoch": epoch, "step": step, "arch": args.arch, "state_dict": model.state_dict(), "best_prec1": best,
        "optimizer": optimizer.state_dict(), "scheduler": describe_schedule(args), "scaler": scaler.state_dict(),
        "k_size": getattr(model, "k_size", None), "num_classes": args.num_classes,
        "class_names": list(getattr(train_set, "classes", []) or []), "args": cli.as_plain_dict(args),
        "rng": ckpt.rng_state(), "saved_at": time.time(),
    }


def _save(state: Dict, run_dir: str, is_best: bool) -> None:
    last = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    try:
        os.makedirs(run_dir, exist_ok=True)
        ckpt.atomic_save(state, last)
        if is_best:
            ckpt.atomic_copy(last, os.path.join(run_dir, ckpt.BEST_NAME))
    except OSError as exc:
        raise CheckpointWriteError(
            f"could not write a checkpoint in {run_dir} ({exc.strerror or exc}); the previous checkpoint files "
            "there are unchanged: free space or choose another --output-dir, then --resume") from None
