"""The `tensor` input pipeline: decode with torchvision.io (libjpeg-turbo) in the loader workers,
crop and flip uint8 tensors there, and convert to float and normalise on the training device.

Moving uint8 crops instead of float32 images cuts host-to-device traffic by 4x and takes the float
work off the CPU workers. The augmentation draws its parameters exactly as the PIL path does
(RandomResizedCrop scale and ratio, flip with p=0.5); resizing on tensors is bilinear with
antialiasing, so evaluation images match the PIL transform to within rounding, not bit for bit.
"""
import warnings
from io import BytesIO

import numpy as np
import torch
from PIL import Image
from torchvision import io
from torchvision.transforms import InterpolationMode, v2

from .data import IMAGENET_MEAN, IMAGENET_STD


def decode_rgb(path: str) -> torch.Tensor:
    """uint8 (3, H, W) from an image file; see decode_rgb_bytes."""
    with open(path, "rb") as f:
        return decode_rgb_bytes(f.read())


def decode_rgb_bytes(data: bytes) -> torch.Tensor:
    """uint8 (3, H, W). torchvision.io handles JPEG (also CMYK and grayscale) and PNG, whatever the
    file name says; anything it rejects goes through PIL, which raises OSError for broken files."""
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 announces a move of its decoders to TorchCodec; they still work, and
            # the announcement would otherwise repeat in every loader worker.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
            return io.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=io.ImageReadMode.RGB)
    except RuntimeError:
        with Image.open(BytesIO(data)) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def train_transform_uint8(crop_size: int, min_scale: float = 0.08):
    return v2.Compose([
        v2.RandomResizedCrop(crop_size, scale=(min_scale, 1.0), interpolation=InterpolationMode.BILINEAR,
                             antialias=True),
        v2.RandomHorizontalFlip(),
    ])


def eval_transform_uint8(crop_size: int, resize: int):
    return v2.Compose([
        v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(crop_size),
    ])


class DeviceNormalize:
    """uint8 batch on the device -> float, scaled to [0, 1] and normalised with the ImageNet statistics."""

    def __init__(self, device: torch.device):
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std
