"""What every input pipeline shares: normalisation constants, what counts as an image file, how files
are opened and turned into 8-bit RGB, the policy for unreadable files, the seeded sample wrapper and the
batch types that pass from the loader to the device stage.

Every decoder error is an unreadable image, whatever its type (PIL raises OSError, ValueError,
SyntaxError or DecompressionBombError; torchvision raises RuntimeError): in training it is skipped and
counted, in evaluation it is an error naming the file unless --skip-corrupt.
"""
import sys
from io import BytesIO
from typing import Any, List, NamedTuple, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import datasets

from ..errors import RunError
from ..seeds import derive_seed
from .listing import is_class_folder, is_image_file, list_split  # noqa: F401 (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ASPECT_RATIOS = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop's default, as in the official augmentation


class CorruptImageError(RunError):
    """An image that cannot be decoded during evaluation (where leaving it out would change the result)."""


class UnreadableImage(Exception):
    """Raised by the decoders for a file they cannot turn into an image; never leaves the data package."""

    def __init__(self, path: str, cause: BaseException):
        reason = " ".join(str(cause).split())[:200] or type(cause).__name__
        super().__init__(f"{type(cause).__name__}: {reason}")
        self.path = path


class ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder over the project's listing of the split (listing.py): the classes and
    images the dataset checks counted, nothing else (no hidden folders, no links back into the tree, no
    FIFOs)."""

    def __init__(self, root: str, transform, loader):
        self._listing = list_split(root)
        super().__init__(root, transform, loader=loader, is_valid_file=is_image_file)

    def find_classes(self, directory: str):
        classes = self._listing.classes
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        return list(self._listing.samples)


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UnreadableImage(path, exc) from None


def open_image(data: bytes, path: str) -> Image.Image:
    """PIL's lazy open: reads the header only (size, mode, format), refuses decompression bombs."""
    try:
        return Image.open(BytesIO(data))
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, ...: all unreadable
        raise UnreadableImage(path, exc) from None


def _sixteen_to_eight_bits(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grayscale as 8 bits by keeping the high byte; PIL's own conversion
    clips every value above 255 to white."""
    values = np.asarray(image)
    if image.mode == "F":
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))


def to_rgb8(image: Image.Image, path: str) -> Image.Image:
    """Decode a lazily opened image into 8-bit RGB: the reference conversion every pipeline uses for files
    that are not plain 8-bit RGB or grayscale (CMYK, palette, alpha, 16-bit)."""
    try:
        image.load()
        if image.mode.startswith("I") or image.mode == "F":
            image = _sixteen_to_eight_bits(image)
        return image.convert("RGB")
    except Exception as exc:
        raise UnreadableImage(path, exc) from None


def decode_pil(path: str) -> Image.Image:
    """8-bit RGB PIL image of a file (the official path's decoder, with 16-bit files scaled, not clipped)."""
    return to_rgb8(open_image(read_bytes(path), path), path)


def skip_unreadable(path: str, reason: Any, skip_corrupt: bool) -> None:
    """An image no decoder could read: a warning and None when skipping is allowed (training, or
    --skip-corrupt), else CorruptImageError, since leaving it out would change an evaluation."""
    if not skip_corrupt:
        raise CorruptImageError(f"cannot decode {path} ({reason}): replace or remove the file, or pass "
                                "--skip-corrupt to leave it out of the evaluation")
    print(f"warning: skipping unreadable image {path} ({reason})", file=sys.stderr)
    return None


class SeededSamples(Dataset):
    """What a loader reads: (sample, target, index), or None for an unreadable file when skipping.

    With a seed, each sample's random augmentation is seeded from (seed, epoch, index) alone, through the
    one seed helper (utils/seeds.py: a hash, so the seeds of neighbouring samples and epochs are unrelated
    numbers), so the crop and flip an image gets do not depend on the number of processes or workers, nor
    on where in the epoch a resumed run starts.

    With `replace_unreadable` (training), an unreadable file is replaced by the next readable image of the
    dataset, with the augmentation drawn for the unreadable one's index: batches keep their size (a smaller
    batch would make torch.compile build another graph) and the run stays deterministic. Such a sample
    carries a fourth element, the number of unreadable files it replaced, so they are still counted.
    """

    TRIES = 16  # replacements tried before leaving the sample out

    def __init__(self, dataset: Dataset, seed: Optional[int] = None, skip_corrupt: bool = True,
                 replace_unreadable: bool = False):
        self.dataset, self.seed, self.skip_corrupt, self.epoch = dataset, seed, skip_corrupt, 0
        self.replace_unreadable = replace_unreadable

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # read by workers: they are started anew every epoch (persistent_workers=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def _read(self, index: int, candidate: int):
        """The dataset's sample `candidate`, its augmentation drawn for `index` (and this epoch): torchvision's
        transforms draw from torch's global generator, so the draws happen with that generator set to the
        sample's own seed, and its state is restored after (nothing else's randomness moves)."""
        if self.seed is None:
            return self.dataset[candidate]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.epoch, index))
            return self.dataset[candidate]

    def __getitem__(self, index: int):
        unreadable = 0
        for attempt in range(self.TRIES if self.replace_unreadable else 1):
            candidate = (index + attempt) % len(self.dataset)
            try:
                image, target = self._read(index, candidate)
            except UnreadableImage as exc:
                skip_unreadable(exc.path, exc, self.skip_corrupt)  # warns, or raises in evaluation
                unreadable += 1
                continue
            return (image, target, candidate, unreadable) if unreadable else (image, target, candidate)
        return None


class HostBatch(NamedTuple):
    """A collated batch as the loader yields it; `images` is whatever the backend's device stage takes."""
    images: Any
    targets: Optional[torch.Tensor]
    indices: List[int]
    skipped: int  # unreadable images left out of this batch


class DeviceBatch(NamedTuple):
    """A batch ready for the model: normalised images on the device in the run's memory format."""
    images: torch.Tensor
    targets: torch.Tensor
    indices: List[int]
    skipped: int


def split_samples(samples):
    """The readable samples of a batch as (image, target, index), and how many unreadable files it met
    (left out, or replaced: see SeededSamples)."""
    kept = [sample[:3] for sample in samples if sample is not None]
    replaced = sum(sample[3] for sample in samples if sample is not None and len(sample) > 3)
    return kept, len(samples) - len(kept) + replaced


def collate_tensors(samples) -> HostBatch:
    """Collate (image tensor, target, index) samples with torch's own default_collate."""
    kept, skipped = split_samples(samples)
    if not kept:
        return HostBatch(None, None, [], skipped)
    images, targets, indices = default_collate(kept)
    return HostBatch(images, targets, indices.tolist(), skipped)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to the device; asynchronously only from pinned memory (a "non-blocking" copy of pageable
    memory is a synchronous copy through a staging buffer, and hides that it waits)."""
    return tensor.to(device, non_blocking=device.type == "cuda" and tensor.is_pinned())
