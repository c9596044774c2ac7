"""The epoch loop of a training run: train, checkpoint, evaluate, log, and stop cleanly on a signal with a
resumable mid-epoch checkpoint."""
import os
import random
from dataclasses import dataclass
from typing import Optional

import torch

from ..analysis.attention_insight import log_attention
from ..config.run_config import RunConfig
from ..errors import RunError
from ..running.distributed import DistContext, all_agree, any_process, say
from ..running.preemption import StopRequest
from ..running.run_logger import RunLogger
from ..seeds import derive_seed
from . import checkpoint as ckpt
from .engine import EpochPlan, EvalOptions, NonFiniteLossError, evaluate, train_one_epoch
from .state import TrainState


def seed_initial_weights(seed: int) -> None:
    """Seed as the official main.py does before it builds the model (`torch.manual_seed(seed)`, and Python's
    `random`): `--seed S` starts from the very weights the official `--seed S` starts from, so a comparison
    with the official code differs only in what happens after initialisation. The epochs are reseeded by
    `seed_everything`, so this stream is used by the model's initialisation alone."""
    torch.manual_seed(seed)
    random.seed(seed)


def seed_everything(seed: int, epoch: int) -> None:
    """Reseed at every epoch start: the epoch's randomness then depends on (seed, epoch) only, so a
    resumed run repeats exactly what the uninterrupted one did."""
    value = derive_seed(seed, "epoch", epoch)
    torch.manual_seed(value)
    random.seed(value)


@dataclass(frozen=True)
class Outcome:
    """How a training run ended, in one line (also in the run folder's status.json)."""
    state: str     # finished, stopped (resumable) or failed
    message: str


class Trainer:
    """One training run from its start position to its last epoch (or a stop signal)."""

    def __init__(self, state: TrainState, pipeline, config: RunConfig, ctx: DistContext, logger: RunLogger):
        self.state, self.pipeline, self.config, self.ctx, self.logger = state, pipeline, config, ctx, logger
        self.run_dir, self.loop = config.output.run_dir, config.loop

    def fit(self, start: ckpt.Position, stop: StopRequest, resume_command: str) -> Outcome:
        """Train from `start` until the last epoch, or until `stop` (installed by the caller) is requested."""
        loop, pipeline = self.loop, self.pipeline
        best = max(start.best, self.logger.best_val_top1(before=start.epoch))
        if start.step == 0 and start.row and not self.logger.has_row(start.epoch - 1):
            best = self._validate_and_log(start.epoch - 1, start.row, best)  # killed during that validation
        should_stop = stop.checker(self.ctx.distributed, self.ctx.device, loop.print_freq)
        say(f"=> training epochs {start.epoch}-{loop.epochs - 1}, {pipeline.steps_per_epoch} steps each; "
            "SIGTERM, SIGINT, SIGUSR1 or SIGHUP stops after the current step with a resumable checkpoint")
        for epoch in range(start.epoch, loop.epochs):
            resumed = epoch == start.epoch and start.step > 0
            seed_everything(self.config.run.seed, epoch)
            plan = EpochPlan(epoch, start.step if resumed else 0, pipeline.steps_per_epoch,
                             carried=start.totals if resumed else {})
            with pipeline.train_epoch(epoch, plan.start_step) as batches:
                result = train_one_epoch(self.state, batches, loop, plan, should_stop)
            if not result.completed:
                position = ckpt.Position(epoch, result.steps_done, best, totals=result.totals)
                return self._stop_for_signal(stop, self._payload(position), f"epoch {epoch} step {result.steps_done}",
                                             resume_command)
            _report_epoch_faults(result, epoch)
            _check_finite_weights(self.state, epoch, result.lr)
            row = _train_row(epoch, result)
            # The trained epoch is on disk before validation runs: a validation failure loses nothing.
            if self.ctx.is_main:
                ckpt.save(self._payload(ckpt.Position(epoch + 1, 0, best, row=row)), self.run_dir)
            best = self._validate_and_log(epoch, row, best)
            if any_process(stop.requested, self.ctx.device) and epoch + 1 < loop.epochs:
                return self._stop_for_signal(stop, None, f"the end of epoch {epoch}", resume_command)
        outcome = Outcome("finished", f"done: best Prec@1 {best:.3f}; checkpoints in {self.run_dir}")
        say(f"=> {outcome.message}")
        return outcome

    def _payload(self, position: ckpt.Position):
        return ckpt.payload(self.state, self.config, position)

    def _validate_and_log(self, epoch: int, row: dict, best: float) -> float:
        """Validate the model as it is at the end of `epoch`, write model_best.pth.tar if it is the best so
        far and the epoch's row; returns the new best."""
        state, options = self.state, EvalOptions(show_progress=self.loop.progress)
        val, _ = evaluate(state.evaluator, self.pipeline, state.numerics, state.criterion, options)
        _report_validation(epoch, val)
        if state.ema is not None:  # the moving average, evaluated beside the model
            ema, _ = evaluate(state.ema.module, self.pipeline, state.numerics, state.criterion, options)
            say(f"EMA: Prec@1 {ema['top1']:.3f} Prec@5 {ema['top5']:.3f}\tLoss {ema['loss']:.4f}")
            val = {**val, **{f"ema_{key}": ema[key] for key in ("loss", "top1", "top5")}}
        # The first epoch is the best so far even at 0% top-1: model_best.pth.tar always exists.
        is_best = val["top1"] > best or not os.path.exists(os.path.join(self.run_dir, ckpt.BEST_NAME))
        best = max(best, val["top1"])
        if self.ctx.is_main:
            if is_best:
                ckpt.save_best(self._payload(ckpt.Position(epoch + 1, 0, best, row=row)), self.run_dir)
            _log_epoch(self.logger, row, val)
            if self.config.output.log_attention:
                log_attention(self.logger, state.model, self.pipeline.first_val_batch(64).images, epoch)
        return best

    def _stop_for_signal(self, stop: StopRequest, checkpoint, where: str, resume_command: str) -> Outcome:
        """Save the mid-epoch state (if any), say how to resume, and end the run successfully."""
        path = os.path.join(self.run_dir, ckpt.CHECKPOINT_NAME)
        failure: Optional[RunError] = None
        if self.ctx.is_main and checkpoint is not None:
            try:
                ckpt.save(checkpoint, self.run_dir)
            except RunError as exc:
                failure = exc
        # No process exits before the checkpoint is on disk: launchers that end a job when its first process
        # exits (srun --kill-on-bad-exit, seeing torchrun's exit 1 after a SIGTERM) would cut the save short.
        all_agree(failure is None, self.ctx.device)
        if failure is not None:
            raise failure
        by = stop.signal_name or "a signal on another rank"
        outcome = Outcome("stopped", f"stopped by {by} at {where}; checkpoint: {path}; resume with: {resume_command}")
        say(f"=> stopped by {by} at {where}; checkpoint: {path}\n=> resume with: {resume_command}", flush=True)
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


def _train_row(epoch: int, result) -> dict:
    """The training half of the epoch's metrics.csv row."""
    return {"epoch": epoch, "lr": result.lr, "train_loss": result.metrics["loss"],
            "train_top1": result.metrics["top1"], "train_img_s": round(result.images_per_s, 1),
            "epoch_time_s": round(result.seconds, 2), "skipped_images": result.skipped_images}


def _log_epoch(logger: RunLogger, train_row: dict, val) -> None:
    row = {key: train_row[key] for key in ("epoch", "lr", "train_loss", "train_top1")}
    row.update({"val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"]})
    row.update({key: train_row[key] for key in ("train_img_s", "epoch_time_s", "skipped_images")})
    row.update({f"ema_val_{key[4:]}": value for key, value in val.items() if key.startswith("ema_")})
    logger.log_epoch(row)
    say(f"Epoch {row['epoch']}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f} | val loss "
        f"{val['loss']:.4f} top1 {val['top1']:.3f} top5 {val['top5']:.3f} | lr {row['lr']:.4g} | "
        f"{row['train_img_s']:.0f} img/s | {row['epoch_time_s']:.1f}s", flush=True)

