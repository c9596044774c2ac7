"""The training and evaluation loops, shared by every entry point, test and benchmark."""
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from tqdm import tqdm

from .data import steps_per_epoch
from .distributed import all_gather_objects, all_reduce_sum
from .gpu_data import DeviceJpegDecoder, EncodedBatch
from .metrics import MetricSums
from .schedule import lr_at
from .tensor_data import DeviceNormalize


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


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names where and the lr."""


class TooManyUnreadableImages(RuntimeError):
    """More unreadable images in an epoch than --max-skipped allows."""


@dataclass
class Numerics:
    device: torch.device
    amp_dtype: Optional[torch.dtype]  # None: full precision
    channels_last: bool
    _normalize: Optional[DeviceNormalize] = field(default=None, repr=False)
    _jpeg_decoder: Optional[object] = field(default=None, repr=False)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, images, target: torch.Tensor):
        """(images, target) on the device, images normalised in the memory format of the run. A batch of
        the gpu pipeline is decoded here; images no decoder could read are left out, with their targets,
        and their positions are in images.dropped."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if isinstance(images, EncodedBatch):
            if self._jpeg_decoder is None:
                self._jpeg_decoder = DeviceJpegDecoder(self.device)
            batch = images
            images = self._jpeg_decoder(batch)
            if batch.dropped:
                dropped = set(batch.dropped)
                target = target[[k for k in range(len(batch)) if k not in dropped]]
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:  # the tensor pipeline: normalise here, on the device
            if self._normalize is None:
                self._normalize = DeviceNormalize(self.device)
            images = self._normalize(images)
        return images.contiguous(memory_format=fmt), target.to(self.device, non_blocking=True)


def _on_device(numerics: Numerics, images, target, indices: List[int]):
    """numerics.to_device, plus the dataset indices and count of images the device decoder left out."""
    batch = images
    images, target = numerics.to_device(batch, target)
    dropped = set(batch.dropped) if isinstance(batch, EncodedBatch) else set()
    if dropped and indices:
        indices = [index for k, index in enumerate(indices) if k not in dropped]
    return images, target, indices, len(dropped)


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


def _optimizer_step(loss, optimizer, scaler, args, tolerated: int, epoch: int, step: int, lr: float) -> int:
    """Backward and step. With --skip-nonfinite, a non-finite loss skips the update (a host sync per
    step, so only then); returns the number of skipped steps so far."""
    optimizer.zero_grad(set_to_none=True)
    if args.skip_nonfinite and not torch.isfinite(loss.detach()).item():
        tolerated += 1
        if tolerated > args.skip_nonfinite:
            raise NonFiniteLossError(_nonfinite_message(loss.item(), epoch, step, lr))
        return tolerated
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return tolerated


def train_one_epoch(model, loader, criterion, optimizer, scaler, numerics: Numerics, args, epoch: int,
                    start_step: int = 0, is_main: bool = True, world_size: int = 1,
                    should_stop: Callable[[int], bool] = lambda step: False) -> EpochResult:
    """Train one epoch (from `start_step` when resuming mid-epoch). Metrics stay on the device and are
    read every --print-freq steps, which is also when a non-finite loss is detected. `should_stop(step)`
    is asked after every step (preemption); the loop then ends early with steps_done < total_steps."""
    model.train()
    total = start_step + steps_per_epoch(loader)
    sums = MetricSums(numerics.device)
    bar = tqdm(total=total, initial=start_step, desc=f"Epoch {epoch}", disable=not (is_main and args.progress),
               dynamic_ncols=True, leave=False)
    step, lr, seen, skipped, tolerated, start = start_step, 0.0, 0, 0, 0, time.perf_counter()
    with batches(loader) as stream:
        for images, target, _, skipped_now in stream:
            skipped += skipped_now
            lr = lr_at(args, epoch, step, total)
            if images is not None:
                images, target, _, dropped = _on_device(numerics, images, target, [])
                skipped += dropped
            if images is not None and target.numel():
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with numerics.autocast():
                    output = model(images)
                    loss = criterion(output, target)
                before = tolerated
                tolerated = _optimizer_step(loss, optimizer, scaler, args, tolerated, epoch, step, lr)
                if tolerated == before:
                    sums.update(loss, output, target)
                seen += target.shape[0]
            step += 1
            if step % args.print_freq == 0 or step == total:
                current = sums.summary()
                if not math.isfinite(current["loss"]):
                    raise NonFiniteLossError(_nonfinite_message(current["loss"], epoch, step, lr))
                rate = seen / max(1e-9, time.perf_counter() - start)
                bar.set_postfix(loss=f"{current['loss']:.3f}", top1=f"{current['top1']:.1f}", lr=f"{lr:.3g}",
                                img_s=f"{rate * world_size:.0f}", refresh=False)
            bar.update(1)
            if should_stop(step):
                break
    bar.close()
    elapsed = time.perf_counter() - start
    reduced = sums.reduced().summary()
    if not math.isfinite(reduced["loss"]):
        raise NonFiniteLossError(_nonfinite_message(reduced["loss"], epoch, step, lr))
    skipped = int(all_reduce_sum(torch.tensor([skipped], device=numerics.device)).item())
    if skipped > args.max_skipped:
        raise TooManyUnreadableImages(
            f"{skipped} unreadable images in epoch {epoch}, more than --max-skipped {args.max_skipped}: "
            "check the dataset (the warnings above name the files) or raise --max-skipped")
    return EpochResult(reduced, step, total, reduced["count"] / max(1e-9, elapsed), elapsed, lr, skipped, tolerated)


@torch.inference_mode()
def evaluate(model, loader, criterion, numerics: Numerics, args, is_main: bool = True,
             collect_predictions: bool = False):
    """Top-1/top-5 over every image of the loader's dataset exactly once (the sampler does not pad),
    summed over all processes. With collect_predictions, also (index, target, top5) rows from all ranks,
    sorted by dataset index."""
    model.eval()
    sums = MetricSums(numerics.device)
    rows: List[tuple] = []
    skipped, start = 0, time.perf_counter()
    with batches(loader) as stream:
        for images, target, indices, skipped_now in tqdm(stream, desc="Eval", total=len(loader),
                                                         disable=not (is_main and args.progress),
                                                         dynamic_ncols=True, leave=False):
            skipped += skipped_now
            if images is None:
                continue
            images, target, indices, dropped = _on_device(numerics, images, target, indices)
            skipped += dropped
            if not target.numel():
                continue
            with numerics.autocast():
                output = model(images)
                loss = criterion(output, target)
            sums.update(loss, output.float(), target)
            if collect_predictions:
                top = output.float().topk(min(5, output.shape[1]), dim=1).indices.cpu().tolist()
                rows += list(zip(indices, target.cpu().tolist(), top))
    metrics = sums.reduced().summary()
    metrics["skipped"] = int(all_reduce_sum(torch.tensor([skipped], device=numerics.device)).item())
    metrics["seconds"] = time.perf_counter() - start
    metrics["images_per_s"] = metrics["count"] / max(1e-9, metrics["seconds"])
    if collect_predictions:
        rows = sorted(r for part in all_gather_objects(rows) for r in part)
    return metrics, rows
