"""The step between a loader and the model: host batches in, DeviceBatches out.

For the `gpu` pipeline on CUDA the stage does real device work (decode, crop, resize, flip), so `stream`
prepares the next batch on a side CUDA stream before handing out the current one: its decoding is queued
while the current step is still being launched and runs beside it on the GPU. The other pipelines only copy
and normalise, and keep the plain, one-at-a-time form. The choice is made once, in `build_data`.
"""
from typing import Iterable, Iterator, Optional, Tuple

import torch

from .common import DeviceBatch, HostBatch


class DeviceStage:
    """The backend's device stage, also for batches in which no image was readable."""

    def __init__(self, backend_stage, device: torch.device, ahead: bool = False):
        self.backend_stage = backend_stage
        self.ahead = ahead
        self._side = torch.cuda.Stream(device) if ahead and device.type == "cuda" else None

    def __call__(self, batch: HostBatch) -> DeviceBatch:
        """One batch, ready for use on the current stream (first_val_batch, tools)."""
        if batch.images is None:
            return DeviceBatch(None, None, [], batch.skipped)
        return self.backend_stage(batch)

    def stream(self, host_batches: Iterable[HostBatch]) -> Iterator[DeviceBatch]:
        """The DeviceBatches of `host_batches`, in order. With `ahead`, batch i+1 has been handed to the
        device (on the side stream) before batch i is yielded; a consumer that stops early leaves the
        prepared batch unused, which costs nothing but its memory."""
        if not self.ahead:
            for host in host_batches:
                yield self(host)
            return
        pending: Optional[Tuple[DeviceBatch, Optional[torch.cuda.Event]]] = None
        for host in host_batches:
            prepared = self._prepare_aside(host)
            if pending is not None:
                yield self._hand_over(*pending)
            pending = prepared
        if pending is not None:
            yield self._hand_over(*pending)

    def _prepare_aside(self, host: HostBatch):
        if self._side is None:  # CPU devices: the same order of work, without streams
            return self(host), None
        with torch.cuda.stream(self._side):
            batch = self(host)
            done = torch.cuda.Event()
            done.record(self._side)
        return batch, done

    def _hand_over(self, batch: DeviceBatch, done: Optional[torch.cuda.Event]) -> DeviceBatch:
        if done is not None:
            main = torch.cuda.current_stream(self._side.device)
            main.wait_event(done)  # the step's kernels start after this batch's preparation, not the next's
            for tensor in (batch.images, batch.targets):
                if tensor is not None:  # made on the side stream, used and freed on the main one
                    tensor.record_stream(main)
        return batch
