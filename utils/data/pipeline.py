"""The input pipeline object: it owns the datasets, the loaders (sharded for this process), the position in
the data and the device stage. The training loop tells it the epoch and the step to start at and iterates
what it yields, DeviceBatches (normalised images on the device); it never reaches into loaders, samplers
or datasets, so a pipeline of another kind only has to offer the same few methods.

`LoaderPipeline` is the torch DataLoader pipeline the three backends (pil, tensor, gpu) share; each backend
module subclasses it with its decoder, transforms, collate and device stage.
"""
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Dict, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets

from ..config.sections import AugmentSettings, DataSettings
from .common import DeviceBatch, ImageFolder, SeededSamples
from .device_stage import DeviceStage
from ..seeds import derive_seed
from .samplers import ShardSampler


@dataclass(frozen=True)
class PipelineRun:
    """What a pipeline needs to know about the process it feeds."""
    seed: int
    device: torch.device
    channels_last: bool = False
    num_classes: int = 1000  # synthetic images (--dummy) only
    rank: int = 0
    world_size: int = 1


class TargetRemap:
    """Maps a val folder's class index to the model's class index (picklable for workers)."""

    def __init__(self, mapping: Dict[int, int]):
        self.mapping = mapping

    def __call__(self, target: int) -> int:
        return self.mapping[target]


def _ignore_stop_signals(_worker_id: int) -> None:
    # Preemption signals are the main process's to handle (it finishes the step and checkpoints);
    # workers that died of them would break the loader first.
    for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


@contextlib.contextmanager
def _iterating(loader: DataLoader):
    """Iterate a DataLoader and always stop its worker processes, also when the loop raises or stops early:
    the exception's traceback keeps the iterator alive, and interpreter exit would then wait forever for
    workers still blocked on their queues."""
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # only multi-process iterators have it
        if shutdown is not None:
            shutdown()


class LoaderPipeline:
    """Datasets, loaders and device stage of one backend, built once from the run's data configuration.

    Subclasses (one per backend module) give `load` (path -> decoded item), `collate`, the transforms and
    the device `Stage`; `prepares_ahead` says whether the stage does device work worth preparing a batch
    ahead (the gpu pipeline's decode)."""

    prepares_ahead = False

    def __init__(self, settings: DataSettings, augment: AugmentSettings, run: PipelineRun, need_train: bool):
        self.settings, self.augment, self.run = settings, augment, run
        self.train_set, self.val_set = self._datasets(need_train)
        self.train_loader: Optional[DataLoader] = None
        self.steps_per_epoch = 0  # full training steps of an epoch (0 for evaluation-only runs)
        if self.train_set is not None:
            self._sampler = ShardSampler(self.train_set, run.rank, run.world_size, shuffle=True,
                                         seed=derive_seed(run.seed, "data order"))
            self._samples = SeededSamples(self.train_set, derive_seed(run.seed, "augmentation"),
                                          replace_unreadable=True)
            self.train_loader = self._loader(self._samples, self._sampler, train=True)
            self.steps_per_epoch = self._sampler.share // settings.per_process_batch
        val_sampler = ShardSampler(self.val_set, run.rank, run.world_size, shuffle=False, drop_last=False)
        self.val_loader = self._loader(SeededSamples(self.val_set, None, settings.skip_corrupt), val_sampler,
                                       train=False)
        self.stage = DeviceStage(self.Stage(run.device, run.channels_last), run.device, ahead=self.prepares_ahead)

    # What a backend module provides: `load` (path -> decoded item) and `collate` (samples -> HostBatch) as
    # plain functions (the loader workers receive them), the device stage class, Stage(device, channels_last),
    # called with a HostBatch and returning a DeviceBatch, and the transforms: `train_transforms(crop, min_scale,
    # augment)` and `eval_transforms(crop, resize)`, or overrides of the two methods below.
    load = None
    collate = None
    Stage = None
    train_transforms = None
    eval_transforms = None

    def train_transform(self):
        return type(self).train_transforms(self.settings.train_crop, self.settings.crop_scale, self.augment)

    def eval_transform(self):
        return type(self).eval_transforms(self.settings.val_crop, self.settings.val_resize)

    # What the loops use.
    @property
    def classes(self):
        return getattr(self.train_set if self.train_set is not None else self.val_set, "classes", None)

    @contextlib.contextmanager
    def train_epoch(self, epoch: int, start_step: int = 0) -> Iterator[Iterator[DeviceBatch]]:
        """The DeviceBatches of training epoch `epoch` from step `start_step` on (a resumed run continues
        where it stopped, with the batches the uninterrupted run had there)."""
        self._sampler.set_epoch(epoch, skip=start_step * self.settings.per_process_batch)
        self._samples.set_epoch(epoch)  # read by the workers, which are started anew every epoch
        with _iterating(self.train_loader) as host_batches:
            yield self.stage.stream(host_batches)

    @contextlib.contextmanager
    def val_batches(self) -> Iterator[Iterator[DeviceBatch]]:
        """Every validation image of this process's shard once, in a fixed order."""
        with _iterating(self.val_loader) as host_batches:
            yield self.stage.stream(host_batches)

    @property
    def val_steps(self) -> int:
        return len(self.val_loader)

    def first_val_batch(self, count: int) -> DeviceBatch:
        """The first `count` validation images in a fixed order (the same inputs every epoch), through the
        loader's own collate and the device stage."""
        samples = self.val_loader.dataset
        host = self.val_loader.collate_fn([samples[i] for i in range(min(len(samples), count))])
        return self.stage(host)

    def relative_paths(self) -> Optional[list]:
        """Validation image paths relative to val/ (for --predictions), or None for synthetic data."""
        if not hasattr(self.val_set, "samples"):
            return None
        return [os.path.relpath(path, self.val_set.root) for path, _ in self.val_set.samples]

    # Construction.
    def _datasets(self, need_train: bool):
        """(train, val); train is None for evaluation-only runs. --dummy gives torchvision's FakeData through
        the official transforms."""
        settings = self.settings
        train_tf, val_tf = self.train_transform(), self.eval_transform()
        if settings.dummy or settings.data is None:
            size, batch = (3, settings.train_crop, settings.train_crop), settings.per_process_batch
            classes = self.run.num_classes
            train = datasets.FakeData(batch * 20, size, classes, train_tf) if need_train else None
            return train, datasets.FakeData(batch * 4, size, classes, val_tf, random_offset=1 << 20)
        load = type(self).load
        train = ImageFolder(os.path.join(settings.data, "train"), train_tf, load) if need_train else None
        val = ImageFolder(os.path.join(settings.data, "val"), val_tf, load)
        if settings.label_names is not None:
            position = {name: i for i, name in enumerate(settings.label_names)}
            val.target_transform = TargetRemap({i: position[c] for i, c in enumerate(val.classes)})
        return train, val

    def _loader(self, samples: Dataset, sampler: ShardSampler, train: bool) -> DataLoader:
        workers = self.settings.workers
        return DataLoader(samples, batch_size=self.settings.per_process_batch, sampler=sampler, num_workers=workers,
                          drop_last=train, pin_memory=self.run.device.type == "cuda", collate_fn=type(self).collate,
                          worker_init_fn=_ignore_stop_signals if workers else None)
