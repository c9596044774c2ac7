"""The `gpu` input pipeline: loader workers only read JPEG bytes and draw the augmentation; the batch
is decoded, cropped, resized and flipped on the training device.

Workers read each file's header with PIL's lazy `Image.open` (no decode) for its size and colour layout,
and draw the crop exactly as the official RandomResizedCrop + RandomHorizontalFlip do, from the same random
calls, so a seeded run gets the crops of the `tensor` and `pil` pipelines. Files a GPU decoder cannot take
(PNG or other bytes behind a .JPEG name, CMYK, 16-bit, truncated) are decoded and transformed in the
worker as the `tensor` pipeline does. On the device, JPEGs are decoded by nvImageCodec when
`nvidia-nvimgcodec-cu13` is installed, else by torchvision's nvJPEG binding; on a CPU device torchvision
decodes them in the main process (slow: that is for tests). Resizing is bilinear with antialiasing, as in
the `tensor` pipeline.
"""
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torchvision import io, transforms
from torchvision.transforms.v2 import functional as F

from .common import (ASPECT_RATIOS, DeviceBatch, HostBatch, UnreadableImage, memory_format, open_image, read_bytes,
                     skip_unreadable, split_samples)
from .tensor import Normalize, decode_rgb_bytes
from .tensor import eval_transform as tensor_eval_transform
from .tensor import train_transform as tensor_train_transform


def load(path: str) -> Tuple[str, bytes]:
    """ImageFolder loader: the path (for messages) and the file's bytes."""
    return path, read_bytes(path)


def gpu_decodable(data: bytes, path: str) -> Optional[Tuple[int, int]]:
    """(height, width) of a JPEG that nvJPEG/nvImageCodec can decode into the RGB we need (8-bit YCbCr or
    grayscale, complete), else None. Everything else goes through the worker fallback."""
    header = open_image(data, path)
    complete = data.rstrip(b"\x00")[-2:] == b"\xff\xd9"  # a truncated file lacks the end-of-image marker
    if header.format == "JPEG" and header.mode in ("RGB", "L") and getattr(header, "bits", 8) == 8 and complete:
        return header.height, header.width
    return None


@dataclass
class EncodedImage:
    """One sample on its way to the device: JPEG bytes with their crop, or a crop already decoded."""
    path: str
    crop_size: int
    skip_corrupt: bool
    data: Optional[torch.Tensor] = None   # uint8 1-D JPEG bytes, decoded on the device
    box: Optional[Tuple[int, int, int, int]] = None  # training: (top, left, height, width) to crop
    flip: bool = False
    resize: Optional[int] = None           # evaluation: short side before the center crop
    ready: Optional[torch.Tensor] = None   # uint8 (3, S, S) decoded in the worker (not GPU-decodable)


class EncodedBatch(list):
    """A collated list of EncodedImage. After decoding, `dropped` holds the positions of images that
    no decoder could read (left out of the batch, as unreadable files are in the other pipelines)."""
    dropped: Sequence[int] = ()


class _Plan:
    def __init__(self, crop_size: int, skip_corrupt: bool, fallback):
        self.crop_size, self.skip_corrupt, self.fallback = crop_size, skip_corrupt, fallback

    def _worker_decoded(self, path: str, data: bytes) -> EncodedImage:
        try:
            image = decode_rgb_bytes(data, path)
        except UnreadableImage:
            raise
        except Exception as exc:
            raise UnreadableImage(path, exc) from None
        return EncodedImage(path, self.crop_size, self.skip_corrupt, ready=self.fallback(image))


class TrainPlan(_Plan):
    """ImageFolder transform for training: RandomResizedCrop box and flip drawn here, applied on the device."""

    def __init__(self, crop_size: int, min_scale: float = 0.08):
        super().__init__(crop_size, True, tensor_train_transform(crop_size, min_scale))
        self.scale = (min_scale, 1.0)

    def __call__(self, item: Tuple[str, bytes]) -> EncodedImage:
        path, data = item
        size = gpu_decodable(data, path)
        if size is None:
            return self._worker_decoded(path, data)
        # get_params reads only the size of its image argument; a broadcast view has the right shape
        # without allocating a picture. Then the flip, drawn as RandomHorizontalFlip draws it.
        shape_only = torch.empty(1, 1, 1, dtype=torch.uint8).expand(3, *size)
        box = transforms.RandomResizedCrop.get_params(shape_only, list(self.scale), list(ASPECT_RATIOS))
        flip = bool(torch.rand(1) < 0.5)
        return EncodedImage(path, self.crop_size, True, data=_as_tensor(data), box=tuple(box), flip=flip)


class EvalPlan(_Plan):
    """ImageFolder transform for evaluation: resize the short side, center crop (SPEC §6), on the device."""

    def __init__(self, crop_size: int, resize: int, skip_corrupt: bool = False):
        super().__init__(crop_size, skip_corrupt, tensor_eval_transform(crop_size, resize))
        self.resize = resize

    def __call__(self, item: Tuple[str, bytes]) -> EncodedImage:
        path, data = item
        if gpu_decodable(data, path) is None:
            return self._worker_decoded(path, data)
        return EncodedImage(path, self.crop_size, self.skip_corrupt, data=_as_tensor(data), resize=self.resize)


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def collate(samples) -> HostBatch:
    kept, skipped = split_samples(samples)
    if not kept:
        return HostBatch(None, None, [], skipped)
    images = EncodedBatch(sample[0] for sample in kept)
    targets = torch.tensor([sample[1] for sample in kept], dtype=torch.long)
    return HostBatch(images, targets, [sample[2] for sample in kept], skipped)


def _geometry(image: torch.Tensor, sample: EncodedImage) -> torch.Tensor:
    """The crop, resize and flip the worker planned, applied to a decoded (3, H, W) uint8 image."""
    size = [sample.crop_size, sample.crop_size]
    if sample.box is not None:
        top, left, height, width = sample.box
        image = F.resized_crop(image, top, left, height, width, size, antialias=True)
    else:
        image = F.center_crop(F.resize(image, [sample.resize], antialias=True), size)
    return F.horizontal_flip(image) if sample.flip else image


class DeviceJpegDecoder:
    """Decodes EncodedBatches on `device` into uint8 (N, 3, S, S) batches (normalised later)."""

    def __init__(self, device: torch.device, prefer: str = "auto"):
        self.device = device
        self.backend = _choose_backend(device, prefer)
        self._nvimgcodec = None
        if self.backend == "nvimgcodec":
            from nvidia import nvimgcodec  # optional extra: pip install nvidia-nvimgcodec-cu13

            self._nvimgcodec = (nvimgcodec.Decoder(), nvimgcodec.DecodeParams(apply_exif_orientation=False))
        # A side stream lets the decoding of this batch overlap the tail of the previous step.
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        if self._stream is None:
            return self._decode(batch)
        main = torch.cuda.current_stream(self.device)
        # No wait on the main stream first: the inputs are host memory, and the caching allocator keeps
        # each stream's blocks apart, so decoding can start while the previous step still runs.
        with torch.cuda.stream(self._stream):
            images = self._decode(batch)
        main.wait_stream(self._stream)
        images.record_stream(main)
        return images

    def _decode(self, batch: EncodedBatch) -> torch.Tensor:
        jpeg_positions = [k for k, sample in enumerate(batch) if sample.data is not None]
        decoded = self._decode_jpegs([batch[k].data for k in jpeg_positions])
        images: List[Optional[torch.Tensor]] = [None] * len(batch)
        for k, image in zip(jpeg_positions, decoded):
            if image is None:
                image = _decode_on_host(batch[k])
            images[k] = None if image is None else _geometry(image.to(self.device), batch[k])
        for k, sample in enumerate(batch):
            if sample.ready is not None:
                images[k] = sample.ready.to(self.device, non_blocking=True)
        batch.dropped = [k for k, image in enumerate(images) if image is None]
        kept = [image for image in images if image is not None]
        if not kept:
            return torch.empty(0, 3, batch[0].crop_size, batch[0].crop_size, dtype=torch.uint8, device=self.device)
        return torch.stack(kept)

    def _decode_jpegs(self, encoded: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """(3, H, W) uint8 per JPEG, None where the decoder failed (retried on the host by the caller)."""
        if not encoded:
            return []
        if self._nvimgcodec is not None:
            decoder, params = self._nvimgcodec
            stream = torch.cuda.current_stream(self.device).cuda_stream
            images = decoder.decode([data.numpy().tobytes() for data in encoded], params=params, cuda_stream=stream)
            return [None if image is None else _hwc_to_rgb_chw(torch.from_dlpack(image)) for image in images]
        target = self.device if self.device.type == "cuda" else "cpu"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
            try:
                return list(io.decode_jpeg(encoded, mode=io.ImageReadMode.RGB, device=target))
            except RuntimeError:
                pass  # one bad file fails the whole batch call: find it by decoding one at a time
            out: List[Optional[torch.Tensor]] = []
            for data in encoded:
                try:
                    out.append(io.decode_jpeg(data, mode=io.ImageReadMode.RGB, device=target))
                except RuntimeError:
                    out.append(None)
            return out


def _hwc_to_rgb_chw(image: torch.Tensor) -> torch.Tensor:
    """nvImageCodec's (H, W, C) output as (3, H, W); a single channel (grayscale) is repeated."""
    image = image.permute(2, 0, 1)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _decode_on_host(sample: EncodedImage) -> Optional[torch.Tensor]:
    """Second chance for a JPEG the device decoder rejected: the worker's decoder, here on the host.
    None if that fails too."""
    try:
        return decode_rgb_bytes(bytes(sample.data.numpy()), sample.path)
    except Exception as exc:  # any decoder error: the file is unreadable
        return skip_unreadable(sample.path, exc, sample.skip_corrupt)


class Stage:
    """Host batch of encoded JPEGs -> decoded, cropped, normalised images on the device, with the
    positions of images no decoder could read left out (their targets too)."""

    def __init__(self, device: torch.device, channels_last: bool, decoder: str = "auto"):
        self.device, self.format = device, memory_format(channels_last)
        self.decoder = DeviceJpegDecoder(device, decoder)
        self.normalize = Normalize(device)

    def __call__(self, batch: HostBatch) -> DeviceBatch:
        encoded, targets, indices = batch.images, batch.targets, batch.indices
        images = self.decoder(encoded)
        if encoded.dropped:
            dropped = set(encoded.dropped)
            keep = [k for k in range(len(encoded)) if k not in dropped]
            targets, indices = targets[keep], [indices[k] for k in keep]
        images = self.normalize(images).contiguous(memory_format=self.format)
        return DeviceBatch(images, targets.to(self.device), indices, batch.skipped + len(encoded.dropped))


def nvimgcodec_available() -> bool:
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except ImportError:
        return False
    return True


def _choose_backend(device: torch.device, prefer: str) -> str:
    if prefer not in ("auto", "nvimgcodec", "torchvision"):
        raise ValueError(f"unknown JPEG decoder {prefer!r}; expected auto, nvimgcodec or torchvision")
    if device.type != "cuda":
        return "torchvision"
    if prefer == "nvimgcodec" and not nvimgcodec_available():
        raise ValueError("nvImageCodec is not installed: pip install nvidia-nvimgcodec-cu13, or use torchvision")
    if prefer == "auto":
        return "nvimgcodec" if nvimgcodec_available() else "torchvision"
    return prefer
