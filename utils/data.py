"""Datasets, transforms and loaders.

Evaluation uses the official transform exactly (resize short side with PIL bilinear, center crop,
ImageNet mean/std). Training uses RandomResizedCrop + horizontal flip. Every loader yields
(images, targets, indices, skipped): the dataset indices of the batch (for predictions) and how many
unreadable images were left out of it.
"""
import os
import signal
import sys
from typing import List, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate
from torchvision import datasets, transforms

from .samplers import ShardSampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What PIL raises for unreadable files: UnidentifiedImageError and truncation are OSErrors;
# some broken headers surface as ValueError or SyntaxError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError)


class CorruptImageError(RuntimeError):
    """An image that cannot be decoded during evaluation (where skipping would change the result)."""


def train_transform(crop_size: int, min_scale: float = 0.08):
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size, scale=(min_scale, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(crop_size: int, resize: int):
    return transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class SyntheticImages(Dataset):
    """--dummy: random normalised images with labels, reproducible per index, for speed checks."""

    def __init__(self, length: int, num_classes: int, crop_size: int):
        self.length, self.num_classes, self.crop_size = length, num_classes, crop_size
        self.classes = [f"class_{i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(index)
        image = torch.randn(3, self.crop_size, self.crop_size, generator=g)
        return image, index % self.num_classes


class LoaderSamples(Dataset):
    """What a loader reads: the sample with its index, or None for an unreadable file when skipping.

    With a seed, each sample's random augmentation is seeded from (seed, epoch, index) alone, so the
    crop and flip an image gets do not depend on the number of processes or workers, nor on where in
    the epoch a resumed run starts.
    """

    def __init__(self, dataset: Dataset, seed: Optional[int] = None, skip_corrupt: bool = True):
        self.dataset, self.seed, self.skip_corrupt, self.epoch = dataset, seed, skip_corrupt, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # read by workers: they are started anew every epoch (persistent_workers=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if self.seed is not None:
            torch.manual_seed(((self.seed * 1000003 + self.epoch) * 10000019 + index) % 2 ** 63)
        try:
            image, target = self.dataset[index]
        except DECODE_ERRORS as exc:
            path = self.dataset.samples[index][0] if hasattr(self.dataset, "samples") else f"#{index}"
            return skip_unreadable(path, exc, self.skip_corrupt)
        return image, target, index


def skip_unreadable(path: str, exc: Exception, skip_corrupt: bool) -> None:
    """An image no decoder could read: a warning and None when skipping is allowed (training, or
    --skip-corrupt), else CorruptImageError, since leaving it out would change an evaluation."""
    if not skip_corrupt:
        raise CorruptImageError(f"cannot decode {path} ({exc}): replace or remove the file, or pass "
                                "--skip-corrupt to leave it out of the evaluation") from None
    print(f"warning: skipping unreadable image {path} ({exc})", file=sys.stderr)
    return None


def collate_samples(batch):
    kept = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, [], skipped
    from .gpu_data import EncodedBatch, EncodedImage  # here: gpu_data itself imports this module

    if isinstance(kept[0][0], EncodedImage):  # the gpu pipeline: decoded later, on the device
        images = EncodedBatch(sample[0] for sample in kept)
        targets, indices = default_collate([sample[1:] for sample in kept])
        return images, targets, indices.tolist(), skipped
    images, targets, indices = default_collate(kept)
    return images, targets, indices.tolist(), skipped


def _ignore_stop_signals(_worker_id: int) -> None:
    # Preemption signals are the main process's to handle (it finishes the step and checkpoints);
    # workers that died of them would break the loader first.
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", signal.SIGTERM)):
        signal.signal(sig, signal.SIG_IGN)


def resolve_backend(args, device) -> str:
    """auto: the tensor pipeline on CUDA (uint8 to the GPU), PIL (the official path) on the CPU.
    The gpu pipeline stays opt-in until it has been measured on a GPU (BENCHMARKS.md)."""
    if args.data_backend == "auto":
        return "tensor" if device.type == "cuda" else "pil"
    return args.data_backend


def build_datasets(args, need_train: bool, backend: str = "pil"):
    """(train, val) datasets; train is None for evaluation-only runs. The tensor backend yields uint8
    images, normalised later on the device (utils/tensor_data.py); the gpu backend yields JPEG bytes
    with their planned crops, decoded on the device (utils/gpu_data.py)."""
    if args.dummy:
        classes = args.num_classes or 1000
        train = SyntheticImages(args.batch_size * 20, classes, args.crop_size) if need_train else None
        return train, SyntheticImages(args.batch_size * 4, classes, args.crop_size)
    if backend == "gpu":
        from .gpu_data import EvalPlan, TrainPlan, read_encoded

        loader = read_encoded
        train_tf = TrainPlan(args.crop_size, args.crop_scale)
        val_tf = EvalPlan(args.crop_size, args.val_resize, skip_corrupt=getattr(args, "skip_corrupt", False))
    elif backend == "tensor":
        from .tensor_data import decode_rgb, eval_transform_uint8, train_transform_uint8

        loader = decode_rgb
        train_tf = train_transform_uint8(args.crop_size, args.crop_scale)
        val_tf = eval_transform_uint8(args.crop_size, args.val_resize)
    else:
        loader = datasets.folder.default_loader
        train_tf = train_transform(args.crop_size, args.crop_scale)
        val_tf = eval_transform(args.crop_size, args.val_resize)
    train = None
    if need_train:
        train = datasets.ImageFolder(os.path.join(args.data, "train"), train_tf, loader=loader)
    val = datasets.ImageFolder(os.path.join(args.data, "val"), val_tf, loader=loader)
    return train, val


def _loader(samples: LoaderSamples, batch_size: int, sampler, workers: int, device, drop_last: bool):
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      pin_memory=device.type == "cuda", collate_fn=collate_samples,
                      worker_init_fn=_ignore_stop_signals if workers else None)


def build_train_loader(dataset, args, ctx) -> DataLoader:
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size, shuffle=True, seed=args.seed, drop_last=True)
    samples = LoaderSamples(dataset, seed=args.seed, skip_corrupt=True)
    return _loader(samples, args.per_process_batch, sampler, args.workers, ctx.device, True)


def build_val_loader(dataset, args, ctx) -> DataLoader:
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size, shuffle=False, drop_last=False)
    samples = LoaderSamples(dataset, seed=None, skip_corrupt=args.skip_corrupt)
    return _loader(samples, args.per_process_batch, sampler, args.workers, ctx.device, False)


def steps_per_epoch(loader: DataLoader) -> int:
    return len(loader.sampler) // loader.batch_size


def relative_paths(dataset) -> Optional[List[str]]:
    """Image paths relative to the dataset root (for --predictions), or None for synthetic data."""
    if not hasattr(dataset, "samples"):
        return None
    return [os.path.relpath(path, dataset.root) for path, _ in dataset.samples]
