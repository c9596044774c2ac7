"""The training and evaluation loops, shared by every entry point, test and benchmark.

The loops iterate DeviceBatches (normalised images on the device) from an input pipeline (utils/data);
they never look at which pipeline made them, nor at its loaders.
"""
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import torch

from ..config.sections import LoopSettings
from ..errors import RunError
from ..running.distributed import all_agree, all_gather_objects, all_reduce_sum, world_size
from .metrics import DeferredReads, MetricSums
from .numerics import Numerics
from ..running.progress import Progress, StepReport
from .state import TrainState


class NonFiniteLossError(RunError):
    """The loss became NaN or inf; the message names where and the lr."""


class TooManyUnreadableImages(RunError):
    """More unreadable images in an epoch than --max-skipped allows."""


@dataclass(frozen=True)
class EpochPlan:
    epoch: int
    start_step: int   # > 0 when resuming in the middle of the epoch
    total_steps: int  # steps of the whole epoch
    # Totals of the steps before start_step (all processes), from the checkpoint of a stop in the middle of
    # the epoch, so the epoch's metrics cover all its steps: see EpochResult.totals.
    carried: Dict[str, float] = field(default_factory=dict)


@dataclass
class EpochResult:
    metrics: dict        # loss, top1, top5, count: over every step of the epoch so far, all processes
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

    @property
    def totals(self) -> Dict[str, float]:
        """What a resumed run needs to finish this epoch's metrics (saved in a mid-epoch checkpoint)."""
        m = self.metrics
        return {"loss_sum": m["loss"] * m["count"], "top1_sum": m["top1"] * m["count"] / 100.0,
                "top5_sum": m["top5"] * m["count"] / 100.0, "count": m["count"], "seconds": self.seconds,
                "skipped": self.skipped_images, "nonfinite": self.nonfinite_steps}


def _nonfinite_message(value: float, epoch: int, step: int, lr: float) -> str:
    return (f"loss became {value} by epoch {epoch} step {step} (lr {lr:.4g}): lower --lr, add --warmup-epochs, "
            "use --amp bf16 instead of fp16, or tolerate a few such steps with --skip-nonfinite N; "
            "the checkpoints written before stay as they were")


def _update(state: TrainState, loss: torch.Tensor, skip_nonfinite: bool) -> bool:
    """Backward and optimizer step; False (nothing updated) when skipping a non-finite loss. Checking costs a
    host sync per step, so it is only done when --skip-nonfinite allows skipping; under DDP every rank
    must take the same decision (one rank skipping backward while the others all-reduce would hang)."""
    state.optimizer.zero_grad(set_to_none=True)
    if skip_nonfinite and not all_agree(bool(torch.isfinite(loss.detach()).item()), state.numerics.device):
        return False
    state.scaler.scale(loss).backward()
    if state.clip_grad_norm is not None:
        state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.clip_grad_norm)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return True


@dataclass
class _Interval:
    """Host-side counts at the moment the device sums were copied out."""
    step: int
    seen: int        # images trained on
    counted: int     # images in the sums (steps with a finite loss)
    time: float
    data_time: float


def _report(plan: EpochPlan, read, previous: Optional[tuple], lr: float) -> StepReport:
    """The StepReport of the interval between two reads of the sums (`previous` and `read`: host copies of
    [loss sum, correct@1, correct@5] with their _Interval), and of the epoch so far."""
    sums, at = read
    start_sums, start = previous if previous is not None else (torch.zeros_like(sums),
                                                               _Interval(plan.start_step, 0, 0, 0.0, 0.0))
    steps = max(1, at.step - start.step)
    count = max(1, at.counted - start.counted)
    total_steps = max(1, at.step - plan.start_step)
    total_count = max(1, at.counted)
    return StepReport(
        epoch=plan.epoch, step=at.step, total=plan.total_steps,
        step_s=(at.time - start.time) / steps, step_s_avg=at.time / total_steps,
        data_s=(at.data_time - start.data_time) / steps, data_s_avg=at.data_time / total_steps,
        loss=float(sums[0] - start_sums[0]) / count, loss_avg=float(sums[0]) / total_count,
        top1=100.0 * float(sums[1] - start_sums[1]) / count, top1_avg=100.0 * float(sums[1]) / total_count,
        lr=lr, images_per_s=world_size() * at.seen / max(1e-9, at.time))


def _with_carried(reduced: MetricSums, carried: Dict[str, float]) -> dict:
    """The epoch's summary over all processes, including the steps before a resume (`carried`)."""
    if carried:
        reduced.sums += torch.tensor([carried["loss_sum"], carried["top1_sum"], carried["top5_sum"]],
                                     dtype=torch.float64, device=reduced.sums.device)
        reduced.count += int(carried["count"])
    return reduced.summary()


def train_one_epoch(state: TrainState, batches: Iterable, loop: LoopSettings, plan: EpochPlan,
                    should_stop: Callable[[int], bool] = lambda step: False) -> EpochResult:
    """Train one epoch (from plan.start_step when resuming mid-epoch) on `batches`, the epoch's DeviceBatches
    from that step on. Metrics stay on the device and are copied out every --print-freq steps without
    waiting (metrics.DeferredReads), which is also when a non-finite loss is detected. `should_stop(step)`
    is asked after every step (preemption); the loop then ends early with steps_done < total_steps."""
    state.runner.train()
    epoch, total, device = plan.epoch, plan.total_steps, state.numerics.device
    sums = MetricSums(device)
    reads = DeferredReads(device)
    progress = Progress(f"Epoch {epoch}", total, plan.start_step, loop.progress)
    step, lr, seen, skipped, tolerated = plan.start_step, state.lr, 0, 0, 0
    start = fetch = time.perf_counter()
    data_time, last_read = 0.0, None
    for batch in batches:
        data_time += time.perf_counter() - fetch
        skipped += batch.skipped
        lr = state.lr
        if batch.images is not None and batch.targets.numel():
            images, targets = batch.images, batch.targets
            if state.mixer is not None:  # soft targets: CrossEntropyLoss takes class probabilities
                images, targets = state.mixer(images, targets, epoch, step)
            with state.numerics.autocast():
                output = state.runner(images)
                loss = state.criterion(output, targets)
            if _update(state, loss, loop.skip_nonfinite > 0):
                sums.update(loss, output, targets)
                if state.ema is not None:
                    global_step = epoch * total + step
                    state.ema.after_step(state.model, global_step, global_step < state.warmup_steps)
            else:
                tolerated += 1
                if tolerated > loop.skip_nonfinite:
                    raise NonFiniteLossError(_nonfinite_message(loss.item(), epoch, step, lr))
            seen += batch.targets.shape[0]
        state.scheduler.step()
        step += 1
        report = None
        if step % loop.print_freq == 0 or step == total:
            now = _Interval(step, seen, sums.count, time.perf_counter() - start, data_time)
            read = reads.push(sums.sums, now)
            if read is not None:
                if not math.isfinite(float(read[0][0])):
                    raise NonFiniteLossError(_nonfinite_message(float(read[0][0]), epoch, read[1].step, lr))
                report = _report(plan, read, last_read, lr)
                last_read = read
        progress.advance(report)
        if should_stop(step):
            break
        fetch = time.perf_counter()
    progress.close()
    carried = plan.carried or {}
    elapsed = time.perf_counter() - start + carried.get("seconds", 0.0)
    reduced = _with_carried(sums.reduced(), carried)
    if not math.isfinite(reduced["loss"]):
        raise NonFiniteLossError(_nonfinite_message(reduced["loss"], epoch, step, lr))
    skipped = int(all_reduce_sum(torch.tensor([skipped], device=device)).item()) + int(carried.get("skipped", 0))
    if skipped > loop.max_skipped:
        raise TooManyUnreadableImages(
            f"{skipped} unreadable images in epoch {epoch}, more than --max-skipped {loop.max_skipped}: "
            "check the dataset (the warnings above name the files) or raise --max-skipped")
    tolerated += int(carried.get("nonfinite", 0))
    return EpochResult(reduced, step, total, reduced["count"] / max(1e-9, elapsed), elapsed, lr, skipped, tolerated)


@dataclass(frozen=True)
class EvalOptions:
    show_progress: bool = True
    collect_predictions: bool = False
    # A compiled model gets every batch at full size (the last one padded, the padding's outputs dropped):
    # a smaller last batch would make torch.compile build a second graph at the end of the run.
    fixed_batch: Optional[int] = None


def _padded(images: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """`images` followed by zeros up to `size` images, in the same memory format."""
    if size is None or images.shape[0] >= size:
        return images
    out = images.new_zeros((size, *images.shape[1:]))
    if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    out[: images.shape[0]] = images
    return out


@torch.inference_mode()
def evaluate(model, pipeline, numerics: Numerics, criterion, options: EvalOptions = EvalOptions()):
    """Top-1/top-5 over every validation image of `pipeline` exactly once (its shards do not pad), summed
    over all processes. With options.collect_predictions, also (index, target, top5) rows from all ranks,
    sorted by dataset index."""
    model.eval()
    sums = MetricSums(numerics.device)
    rows: List[tuple] = []
    skipped, start = 0, time.perf_counter()
    progress = Progress("Eval", pipeline.val_steps, bars=options.show_progress)
    with pipeline.val_batches() as batches:
        for batch in batches:
            skipped += batch.skipped
            progress.advance()
            if batch.images is None or not batch.targets.numel():
                continue
            count = batch.targets.shape[0]
            with numerics.autocast():
                output = model(_padded(batch.images, options.fixed_batch))[:count]
                loss = criterion(output, batch.targets)
            sums.update(loss, output.float(), batch.targets)
            if options.collect_predictions:
                top = output.float().topk(min(5, output.shape[1]), dim=1).indices.cpu().tolist()
                rows += list(zip(batch.indices, batch.targets.cpu().tolist(), top))
    progress.close()
    metrics = sums.reduced().summary()
    metrics["skipped"] = int(all_reduce_sum(torch.tensor([skipped], device=numerics.device)).item())
    metrics["seconds"] = time.perf_counter() - start
    metrics["images_per_s"] = metrics["count"] / max(1e-9, metrics["seconds"])
    if options.collect_predictions:
        rows = sorted(r for part in all_gather_objects(rows) for r in part)
    return metrics, rows
