"""The `pil` input pipeline, the official one: PIL decodes in the loader workers, torchvision's
transforms crop, flip, convert to float and normalise there; the device stage only moves the batch.

Evaluation is the official transform exactly (resize the short side with PIL bilinear, center crop,
ImageNet mean/std). Training is RandomResizedCrop + horizontal flip.
"""
from typing import Optional

import torch
from torchvision import transforms

from ..config.sections import AugmentSettings
from .augment import pil_erasing, policy
from .common import (IMAGENET_MEAN, IMAGENET_STD, DeviceBatch, HostBatch, collate_tensors, decode_pil, memory_format,
                     to_device)
from .pipeline import LoaderPipeline

load = decode_pil  # ImageFolder loader of this pipeline (also for tools that read images the official way)


def train_transform(crop_size: int, min_scale: float = 0.08, augment: Optional[AugmentSettings] = None):
    steps = [transforms.RandomResizedCrop(crop_size, scale=(min_scale, 1.0)), transforms.RandomHorizontalFlip(),
             policy(augment, transforms), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
             pil_erasing(augment)]
    return transforms.Compose([step for step in steps if step is not None])


def eval_transform(crop_size: int, resize: int):
    return transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class Stage:
    """Host batch of normalised float images -> the same on the device, in the run's memory format."""

    def __init__(self, device: torch.device, channels_last: bool):
        self.device, self.format = device, memory_format(channels_last)

    def __call__(self, batch: HostBatch) -> DeviceBatch:
        images = to_device(batch.images, self.device).contiguous(memory_format=self.format)
        return DeviceBatch(images, to_device(batch.targets, self.device), batch.indices, batch.skipped)


class Pipeline(LoaderPipeline):
    load = staticmethod(load)
    collate = staticmethod(collate_tensors)
    Stage = Stage
    train_transforms = staticmethod(train_transform)
    eval_transforms = staticmethod(eval_transform)
