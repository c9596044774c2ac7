"""Datasets, transforms, samplers and loaders.

Evaluation uses the official transform exactly (resize short side with PIL bilinear, center crop,
ImageNet mean/std). Training uses RandomResizedCrop + horizontal flip. Samplers shard by rank; the
evaluation sampler never pads, so every validation image is counted exactly once.
"""
import math
import os
from typing import Iterator, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(crop_size: int):
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size),
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


class PerSampleSeeded(Dataset):
    """Seeds the random augmentation of each sample from (seed, epoch, index) alone.

    The crop and flip an image gets then do not depend on the number of processes or workers, nor on
    where in the epoch a resumed run starts: an interrupted-and-resumed run, or one with another
    world size, sees exactly the same training inputs.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        self.classes = getattr(dataset, "classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # read by workers: they are started anew every epoch (persistent_workers=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        torch.manual_seed(((self.seed * 1000003 + self.epoch) * 10000019 + index) % 2 ** 63)
        return self.dataset[index]


class ShardSampler(Sampler[int]):
    """Epoch-seeded shuffle (or fixed order), sharded by rank.

    Training (drop_last): every rank gets the same number of indices, as DDP needs equal step counts.
    Evaluation (pad=False, no shuffle): ranks take indices rank, rank+W, ... so each index is seen
    exactly once overall; the last ranks may get one fewer. `skip` drops the first indices of this
    rank's share, to resume in the middle of an epoch.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> List[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 10007 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.drop_last:
            order = order[: self.length // self.world_size * self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip:])

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.world_size - self.skip
        return len(range(self.rank, self.length, self.world_size)) - self.skip


def build_datasets(args, need_train: bool):
    """(train, val) datasets; train is None for evaluation-only runs."""
    if args.dummy:
        classes = args.num_classes or 1000
        train = SyntheticImages(args.batch_size * 20, classes, args.crop_size) if need_train else None
        return train, SyntheticImages(args.batch_size * 4, classes, args.crop_size)
    train = None
    if need_train:
        train = datasets.ImageFolder(os.path.join(args.data, "train"), train_transform(args.crop_size))
    val = datasets.ImageFolder(os.path.join(args.data, "val"), eval_transform(args.crop_size, args.val_resize))
    return train, val


def _loader(dataset, batch_size: int, sampler: Sampler, workers: int, device: torch.device,
            drop_last: bool) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )


def build_train_loader(dataset, args, ctx) -> DataLoader:
    dataset = PerSampleSeeded(dataset, args.seed)
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size, shuffle=True, seed=args.seed, drop_last=True)
    return _loader(dataset, args.per_process_batch, sampler, args.workers, ctx.device, True)


def build_val_loader(dataset, args, ctx) -> DataLoader:
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size, shuffle=False, drop_last=False)
    return _loader(dataset, args.per_process_batch, sampler, args.workers, ctx.device, False)


def steps_per_epoch(loader: DataLoader) -> int:
    return math.floor(len(loader.sampler) / loader.batch_size)


def relative_paths(dataset) -> Optional[List[str]]:
    """Image paths relative to the dataset root (for --predictions), or None for synthetic data."""
    if not hasattr(dataset, "samples"):
        return None
    return [os.path.relpath(path, dataset.root) for path, _ in dataset.samples]
