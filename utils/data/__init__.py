"""Datasets, loaders and the device stage, built once from the run's data configuration.

The input pipeline (`pil`, `tensor` or `gpu`, one module each) is chosen here, where the loaders are
built; the training loop, evaluation, attention logging and the benchmark only receive HostBatches from a
loader and pass them through `Data.stage` (`stage.stream(batches)`), which returns DeviceBatches
(normalised images on the device).
"""
import os
import signal
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets

from . import gpu, pil, tensor
from .augment import Augment
from .common import DeviceBatch, ImageFolder, SeededSamples
from .device_stage import DeviceStage
from .samplers import ShardSampler

BACKENDS = {"pil": pil, "tensor": tensor, "gpu": gpu}


@dataclass(frozen=True)
class DataSettings:
    """What the input pipeline needs to know, and nothing else."""
    data: Optional[str]          # dataset root; None: synthetic images (--dummy)
    data_backend: str            # pil, tensor or gpu (resolved)
    train_crop_size: int
    val_crop_size: int
    crop_scale: float
    val_resize: int
    per_process_batch: int
    workers: int
    seed: int
    skip_corrupt: bool           # evaluation: leave unreadable images out instead of failing
    num_classes: int             # synthetic images only
    channels_last: bool
    label_names: Optional[Tuple[str, ...]] = None  # evaluation: the model's classes, onto which val folders map
    augment: Augment = Augment()                   # training augmentation beyond crop and flip


@dataclass
class Data:
    train_set: Optional[Dataset]
    val_set: Dataset
    train_loader: Optional[DataLoader]
    val_loader: DataLoader
    stage: DeviceStage
    steps_per_epoch: int  # full training steps of an epoch (0 for evaluation-only runs)

    @property
    def classes(self):
        return getattr(self.train_set if self.train_set is not None else self.val_set, "classes", None)

    def first_val_batch(self, count: int) -> DeviceBatch:
        """The first `count` validation images in a fixed order (the same inputs every epoch), through the
        loader's own collate and the device stage."""
        samples = self.val_loader.dataset
        host = self.val_loader.collate_fn([samples[i] for i in range(min(len(samples), count))])
        return self.stage(host)


def _transforms(settings: DataSettings):
    train_crop, val_crop, scale, resize = (settings.train_crop_size, settings.val_crop_size, settings.crop_scale,
                                           settings.val_resize)
    if settings.data_backend == "gpu":
        return (gpu.TrainPlan(train_crop, scale),
                gpu.EvalPlan(val_crop, resize, skip_corrupt=settings.skip_corrupt))
    module = BACKENDS[settings.data_backend]
    return module.train_transform(train_crop, scale, settings.augment), module.eval_transform(val_crop, resize)


def build_datasets(settings: DataSettings, need_train: bool):
    """(train, val); train is None for evaluation-only runs. --dummy gives torchvision's FakeData
    through the official transforms."""
    train_tf, val_tf = _transforms(settings)
    if settings.data is None:
        size = (3, settings.train_crop_size, settings.train_crop_size)
        train = datasets.FakeData(settings.per_process_batch * 20, size, settings.num_classes, train_tf) if need_train else None
        return train, datasets.FakeData(settings.per_process_batch * 4, size, settings.num_classes, val_tf, random_offset=1 << 20)
    load = BACKENDS[settings.data_backend].load
    train = ImageFolder(os.path.join(settings.data, "train"), train_tf, load) if need_train else None
    val = ImageFolder(os.path.join(settings.data, "val"), val_tf, load)
    if settings.label_names is not None:
        position = {name: i for i, name in enumerate(settings.label_names)}
        val.target_transform = TargetRemap({i: position[c] for i, c in enumerate(val.classes)})
    return train, val


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


def _loader(samples: SeededSamples, sampler: ShardSampler, settings: DataSettings, device: torch.device,
            train: bool) -> DataLoader:
    return DataLoader(samples, batch_size=settings.per_process_batch, sampler=sampler, num_workers=settings.workers,
                      drop_last=train, pin_memory=device.type == "cuda", collate_fn=BACKENDS[settings.data_backend].collate,
                      worker_init_fn=_ignore_stop_signals if settings.workers else None)


def build_data(settings: DataSettings, ctx, need_train: bool) -> Data:
    """Datasets, the training and validation loaders sharded for this process, and the device stage."""
    train_set, val_set = build_datasets(settings, need_train)
    train_loader, steps = None, 0
    if train_set is not None:
        # The sampler's seed keeps the data order of runs started before it became a DistributedSampler.
        sampler = ShardSampler(train_set, ctx.rank, ctx.world_size, shuffle=True, seed=settings.seed * 10007)
        samples = SeededSamples(train_set, settings.seed, replace_unreadable=True)
        train_loader = _loader(samples, sampler, settings, ctx.device, train=True)
        steps = sampler.share // settings.per_process_batch
    val_sampler = ShardSampler(val_set, ctx.rank, ctx.world_size, shuffle=False, drop_last=False)
    val_loader = _loader(SeededSamples(val_set, None, settings.skip_corrupt), val_sampler, settings, ctx.device,
                         train=False)
    stage = make_stage(settings.data_backend, ctx.device, settings.channels_last)
    return Data(train_set, val_set, train_loader, val_loader, stage, steps)


def make_stage(data_backend: str, device: torch.device, channels_last: bool) -> DeviceStage:
    """The device stage of one input pipeline. Only the gpu pipeline's stage does device work worth
    preparing a batch ahead (decode, crop, resize)."""
    backend_stage = BACKENDS[data_backend].Stage(device, channels_last)
    return DeviceStage(backend_stage, device, ahead=data_backend == "gpu")


def relative_paths(dataset) -> Optional[list]:
    """Image paths relative to the dataset root (for --predictions), or None for synthetic data."""
    if not hasattr(dataset, "samples"):
        return None
    return [os.path.relpath(path, dataset.root) for path, _ in dataset.samples]
