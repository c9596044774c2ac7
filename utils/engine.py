"""The training and evaluation loops, shared by every entry point, test and benchmark.

Batches come from a loader as HostBatches and reach the model through the data stage (utils/data), which
returns normalised images on the device; the loops never look at which input pipeline made them.
"""
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, List

import torch

from .config import LoopSettings
from .distributed import all_gather_objects, all_reduce_sum, world_size
from .errors import RunError
from .metrics import MetricSums
from .numerics import Numerics
from .progress import Progress
from .training_state import TrainState


@contextlib.contextmanager
def batches(loader):
    """Iterate a DataLoader and always stop its worker processes, also when the loop raises: the
    exception's traceback keeps the iterator alive, and interpreter exit would then wait forever for
    workers still blocked on their queues."""
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # only multi-process iterators have it
        if shutdown is not None:
            shutdown()


class NonFiniteLossError(RunError):
    """The loss became NaN or inf; the message names where and the lr."""


class TooManyUnreadableImages(RunError):
    """More unreadable images in an epoch than --max-skipped allows."""


@dataclass(frozen=True)
class EpochPlan:
    epoch: int
    start_step: int   # > 0 when resuming in the middle of the epoch
    total_steps: int  # steps of the whole epoch


@dataclass
class EpochResult:
    metrics: dict
    steps_done: int      # index of the next step; equals total_steps when the epoch completed
    total_steps: int
    images_per_s: float
    seconds: float
    lr: float
    skipped_images: int
    nonfinite_steps: int

    @property
    def completed(self) -> bool:
        return self.steps_done >= self.total_steps


def _nonfinite_message(value: float, epoch: int, step: int, lr: float) -> str:
    return (f"loss became {value} by epoch {epoch} step {step} (lr {lr:.4g}): lower --lr, add --warmup-epochs, "
            "use --amp bf16 instead of fp16, or tolerate a few such steps with --skip-nonfinite N; "
            "the checkpoints written before stay as they were")


def _update(state: TrainState, loss: torch.Tensor, skip_nonfinite: bool) -> bool:
    """Backward and optimizer step; False (nothing updated) when skipping a non-finite loss, which costs a
    host sync per step and so is only checked when --skip-nonfinite allows skipping."""
    state.optimizer.zero_grad(set_to_none=True)
    if skip_nonfinite and not torch.isfinite(loss.detach()).item():
        return False
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return True


def train_one_epoch(state: TrainState, loader, stage, loop: LoopSettings, plan: EpochPlan,
                    should_stop: Callable[[int], bool] = lambda step: False) -> EpochResult:
    """Train one epoch (from plan.start_step when resuming mid-epoch). Metrics stay on the device and are
    read every --print-freq steps, which is also when a non-finite loss is detected. `should_stop(step)`
    is asked after every step (preemption); the loop then ends early with steps_done < total_steps."""
    state.runner.train()
    epoch, total = plan.epoch, plan.total_steps
    sums = MetricSums(state.numerics.device)
    progress = Progress(f"Epoch {epoch}", total, plan.start_step, loop.progress)
    step, lr, seen, skipped, tolerated, start = plan.start_step, state.lr, 0, 0, 0, time.perf_counter()
    with batches(loader) as stream:
        for host_batch in stream:
            batch = stage(host_batch)
            skipped += batch.skipped
            lr = state.lr
            if batch.images is not None and batch.targets.numel():
                with state.numerics.autocast():
                    output = state.runner(batch.images)
                    loss = state.criterion(output, batch.targets)
                if _update(state, loss, loop.skip_nonfinite > 0):
                    sums.update(loss, output, batch.targets)
                else:
                    tolerated += 1
                    if tolerated > loop.skip_nonfinite:
                        raise NonFiniteLossError(_nonfinite_message(loss.item(), epoch, step, lr))
                seen += batch.targets.shape[0]
            state.scheduler.step()
            step += 1
            values = None
            if step % loop.print_freq == 0 or step == total:
                current = sums.summary()
                if not math.isfinite(current["loss"]):
                    raise NonFiniteLossError(_nonfinite_message(current["loss"], epoch, step, lr))
                rate = seen / max(1e-9, time.perf_counter() - start)
                values = {"loss": f"{current['loss']:.3f}", "top1": f"{current['top1']:.1f}", "lr": f"{lr:.3g}",
                          "img_s": f"{rate * world_size():.0f}"}
            progress.advance(values)
            if should_stop(step):
                break
    progress.close()
    elapsed = time.perf_counter() - start
    reduced = sums.reduced().summary()
    if not math.isfinite(reduced["loss"]):
        raise NonFiniteLossError(_nonfinite_message(reduced["loss"], epoch, step, lr))
    skipped = int(all_reduce_sum(torch.tensor([skipped], device=state.numerics.device)).item())
    if skipped > loop.max_skipped:
        raise TooManyUnreadableImages(
            f"{skipped} unreadable images in epoch {epoch}, more than --max-skipped {loop.max_skipped}: "
            "check the dataset (the warnings above name the files) or raise --max-skipped")
    return EpochResult(reduced, step, total, reduced["count"] / max(1e-9, elapsed), elapsed, lr, skipped, tolerated)


@torch.inference_mode()
def evaluate(runner, loader, stage, numerics: Numerics, criterion, show_progress: bool = True,
             collect_predictions: bool = False):
    """Top-1/top-5 over every image of the loader's dataset exactly once (the sampler does not pad),
    summed over all processes. With collect_predictions, also (index, target, top5) rows from all ranks,
    sorted by dataset index."""
    runner.eval()
    sums = MetricSums(numerics.device)
    rows: List[tuple] = []
    skipped, start = 0, time.perf_counter()
    progress = Progress("Eval", len(loader), enabled=show_progress)
    with batches(loader) as stream:
        for host_batch in stream:
            batch = stage(host_batch)
            skipped += batch.skipped
            progress.advance()
            if batch.images is None or not batch.targets.numel():
                continue
            with numerics.autocast():
                output = runner(batch.images)
                loss = criterion(output, batch.targets)
            sums.update(loss, output.float(), batch.targets)
            if collect_predictions:
                top = output.float().topk(min(5, output.shape[1]), dim=1).indices.cpu().tolist()
                rows += list(zip(batch.indices, batch.targets.cpu().tolist(), top))
    progress.close()
    metrics = sums.reduced().summary()
    metrics["skipped"] = int(all_reduce_sum(torch.tensor([skipped], device=numerics.device)).item())
    metrics["seconds"] = time.perf_counter() - start
    metrics["images_per_s"] = metrics["count"] / max(1e-9, metrics["seconds"])
    if collect_predictions:
        rows = sorted(r for part in all_gather_objects(rows) for r in part)
    return metrics, rows
