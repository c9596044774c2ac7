"""The `tensor` input pipeline: decode with torchvision.io (libjpeg-turbo) in the loader workers, crop
and flip uint8 tensors there, and convert to float and normalise on the training device.

Moving uint8 crops instead of float32 images cuts host-to-device traffic by 4x and takes the float
work off the CPU workers. The augmentation draws its parameters exactly as the PIL path does
(RandomResizedCrop scale and ratio, flip with p=0.5); resizing on tensors is bilinear with
antialiasing, so evaluation images match the PIL transform to within rounding, not bit for bit.
Files that are not plain 8-bit RGB or grayscale JPEG/PNG (CMYK, palette, alpha, 16-bit) are decoded by
the reference PIL conversion (common.to_rgb8), so they give the pil pipeline's pixels exactly.
"""
import warnings
from typing import Optional

import numpy as np
import torch
from torchvision import io
from torchvision.transforms import InterpolationMode, v2

from ..config.sections import AugmentSettings
from .augment import policy, uint8_erasing
from .common import (IMAGENET_MEAN, IMAGENET_STD, DeviceBatch, HostBatch, UnreadableImage, collate_tensors,
                     memory_format, open_image, read_bytes, to_device, to_rgb8)
from .pipeline import LoaderPipeline
_LIBRARY_FORMATS = ("JPEG", "PNG")
_LIBRARY_MODES = ("RGB", "L")


def _library_decode(data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        # torchvision 0.29 announces a move of its decoders to TorchCodec; they still work, and the
        # announcement would otherwise repeat in every loader worker.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
        return io.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=io.ImageReadMode.RGB)


def decode_rgb_bytes(data: bytes, path: str = "<bytes>") -> torch.Tensor:
    """uint8 (3, H, W) RGB of an encoded image, whatever its name says. Plain 8-bit files go through
    torchvision.io; the rest, and anything it rejects or returns in another depth, through PIL."""
    header = open_image(data, path)
    if header.format in _LIBRARY_FORMATS and header.mode in _LIBRARY_MODES:
        try:
            image = _library_decode(data)
            if image.dtype == torch.uint8:
                return image
        except RuntimeError:
            pass  # e.g. a truncated file that PIL still reads, or fails on with a clearer message
    array = np.asarray(to_rgb8(header, path))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load(path: str) -> torch.Tensor:
    """ImageFolder loader: uint8 (3, H, W) from an image file."""
    data = read_bytes(path)
    try:
        return decode_rgb_bytes(data, path)
    except UnreadableImage:
        raise
    except Exception as exc:
        raise UnreadableImage(path, exc) from None


def train_transform(crop_size: int, min_scale: float = 0.08, augment: Optional[AugmentSettings] = None):
    steps = [v2.RandomResizedCrop(crop_size, scale=(min_scale, 1.0), interpolation=InterpolationMode.BILINEAR,
                                  antialias=True),
             v2.RandomHorizontalFlip(), policy(augment, v2), uint8_erasing(augment)]
    return v2.Compose([step for step in steps if step is not None])


def eval_transform(crop_size: int, resize: int):
    return v2.Compose([
        v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(crop_size),
    ])


class Normalize:
    """uint8 batch on the device -> float, scaled to [0, 1] and normalised with the ImageNet statistics."""

    def __init__(self, device: torch.device):
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std


class Stage:
    """Host batch of uint8 crops -> normalised float images on the device, in the run's memory format."""

    def __init__(self, device: torch.device, channels_last: bool):
        self.device, self.format = device, memory_format(channels_last)
        self.normalize = Normalize(device)

    def __call__(self, batch: HostBatch) -> DeviceBatch:
        images = self.normalize(to_device(batch.images, self.device)).contiguous(memory_format=self.format)
        return DeviceBatch(images, to_device(batch.targets, self.device), batch.indices, batch.skipped)


class Pipeline(LoaderPipeline):
    load = staticmethod(load)
    collate = staticmethod(collate_tensors)
    Stage = Stage
    train_transforms = staticmethod(train_transform)
    eval_transforms = staticmethod(eval_transform)
