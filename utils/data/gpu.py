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

A batch crosses from a worker to the main process as one uint8 buffer of all its JPEG bytes (with
offsets) and one stacked tensor of the crops decoded in the worker, both allocated in shared memory by
the worker: every tensor sent between processes costs a shared-memory handle (a file descriptor), and one
per image meant about 1,000 in flight per worker at batch 256 with prefetch_factor 4. On CUDA the loader
pins both buffers (`EncodedBatch.pin_memory`), so the device stage's copies are asynchronous.

On the device the per-image work is what must be per image (the crop and the resize of each picture
into its row of a preallocated batch, the flip folded into that write); rounding, normalisation and the
memory format are whole-batch operations. On CUDA the resize is the computation torchvision itself
does for uint8 CUDA images (float conversion, antialiased bilinear interpolation, rounding); on a CPU
device it is torchvision's native uint8 resize, so there the images equal the `tensor` pipeline's pixel
for pixel.
"""
import copy
import itertools
import math
import warnings
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import get_worker_info
from torchvision import io, transforms
from torchvision.transforms.v2 import functional as F

from .common import (ASPECT_RATIOS, DeviceBatch, HostBatch, UnreadableImage, memory_format, open_image, read_bytes,
                     skip_unreadable, split_samples, to_device)
from .pipeline import LoaderPipeline
from .tensor import Normalize, decode_rgb_bytes
from .tensor import eval_transform as tensor_eval_transform
from .tensor import train_transform as tensor_train_transform

# nvImageCodec's decoder by default runs one CPU thread per core, which would compete with the loader
# workers; with the GPU backends first, its threads only parse headers and feed the decoders (and do
# the Huffman decoding of the files that reach the hybrid backend).
NVIMGCODEC_CPU_THREADS = 4
# In order of preference: the GPU's hardware JPEG engines (the fastest decoder on data-centre GPUs), CUDA
# decoding, then CPU Huffman + GPU for what the others refuse. Files that none decodes get the host retry below.
NVIMGCODEC_BACKENDS = ("HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU")


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
    data: Optional[bytes] = None           # the JPEG's bytes, decoded on the device
    box: Optional[Tuple[int, int, int, int]] = None  # training: (top, left, height, width) to crop
    flip: bool = False
    resize: Optional[int] = None           # evaluation: short side before the center crop
    ready: Optional[torch.Tensor] = None   # uint8 (3, S, S) decoded in the worker (not GPU-decodable)


def _batch_tensor(shape: Tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor for a collated batch. In a loader worker it is allocated in shared
    memory straight away, as torch's default_collate does, so that sending it to the main process does
    not copy it into shared memory a second time."""
    numel = math.prod(shape)
    if get_worker_info() is None or numel == 0:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=torch.uint8).new(storage).view(shape)


class EncodedBatch:
    """A collated batch of EncodedImage samples, in as few tensors as possible:

    - `data`: one uint8 tensor with the bytes of every JPEG decoded on the device, back to back; the
      j-th of them (batch position `jpeg[j]`) is `jpeg_bytes(j)`, data[offsets[j]:offsets[j + 1]];
    - `ready`: one uint8 (R, 3, S, S) tensor of the crops decoded in the workers (batch positions
      `worker_decoded`), or None;
    - `plans`: every sample's EncodedImage without its bytes or pixels (path, crop, flip, resize).

    After decoding, `dropped` holds the positions of images that no decoder could read (left out of an
    evaluation batch; in a training batch, Stage puts kept images in their places)."""

    def __init__(self, samples: Sequence[EncodedImage]):
        if any((s.data is None) == (s.ready is None) for s in samples):
            raise ValueError("every EncodedImage holds either JPEG bytes or a decoded crop")
        self.plans = [replace(s, data=None, ready=None) for s in samples]
        self.jpeg = [k for k, s in enumerate(samples) if s.data is not None]
        self.worker_decoded = [k for k, s in enumerate(samples) if s.ready is not None]
        self.offsets = [0, *itertools.accumulate(len(samples[k].data) for k in self.jpeg)]
        self.data = _batch_tensor((self.offsets[-1],))
        buffer = self.data.numpy()
        for k, start, end in zip(self.jpeg, self.offsets, self.offsets[1:]):
            buffer[start:end] = np.frombuffer(samples[k].data, dtype=np.uint8)
        self.ready = None
        if self.worker_decoded:
            crops = [samples[k].ready for k in self.worker_decoded]
            self.ready = torch.stack(crops, out=_batch_tensor((len(crops), *crops[0].shape)))
        self.dropped: List[int] = []

    def __len__(self) -> int:
        return len(self.plans)

    @property
    def training(self) -> bool:
        """A training batch: its device-decoded samples carry a random crop box (evaluation ones a resize)."""
        return any(self.plans[k].box is not None for k in self.jpeg)

    @property
    def crop_size(self) -> int:
        return self.plans[0].crop_size

    def jpeg_bytes(self, j: int) -> torch.Tensor:
        """The j-th JPEG's bytes: a view into `data`, no copy."""
        return self.data[self.offsets[j]:self.offsets[j + 1]]

    def pin_memory(self) -> "EncodedBatch":
        """What DataLoader(pin_memory=True) calls for a batch it does not know how to walk: the same
        batch with its buffers in page-locked memory, so the copies to the device are asynchronous."""
        pinned = copy.copy(self)
        pinned.data = self.data.pin_memory()
        pinned.ready = None if self.ready is None else self.ready.pin_memory()
        pinned.dropped = []
        return pinned


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
        return EncodedImage(path, self.crop_size, True, data=data, box=tuple(box), flip=flip)


class EvalPlan(_Plan):
    """ImageFolder transform for evaluation: resize the short side, center crop (the official evaluation transform), on the device."""

    def __init__(self, crop_size: int, resize: int, skip_corrupt: bool = False):
        super().__init__(crop_size, skip_corrupt, tensor_eval_transform(crop_size, resize))
        self.resize = resize

    def __call__(self, item: Tuple[str, bytes]) -> EncodedImage:
        path, data = item
        if gpu_decodable(data, path) is None:
            return self._worker_decoded(path, data)
        return EncodedImage(path, self.crop_size, self.skip_corrupt, data=data, resize=self.resize)


def collate(samples) -> HostBatch:
    kept, skipped = split_samples(samples)
    if not kept:
        return HostBatch(None, None, [], skipped)
    images = EncodedBatch([sample[0] for sample in kept])
    targets = torch.tensor([sample[1] for sample in kept], dtype=torch.long)
    return HostBatch(images, targets, [sample[2] for sample in kept], skipped)


class Geometry:
    """The per-image part of the device stage: crop, resize and flip one decoded (3, H, W) uint8 image
    into its row of the batch. Two forms, chosen once for the device:

    - exact (CPU devices): torchvision's uint8 transforms as the `tensor` pipeline runs them in its
      workers (torchvision resizes uint8 CPU images natively), so the rows equal that pipeline's images;
    - float (CUDA): what torchvision itself does with a uint8 CUDA image (convert to float, antialiased
      bilinear interpolation, round), with the conversion limited to the crop and the rounding done once
      for the whole batch in `finish`: three kernels per image (convert, interpolate, write), where the
      per-image resized_crop on uint8 CUDA images launched four (convert, interpolate, round, convert
      back), a flip for half of them, then a stack of the batch.

    The flip is folded into the write of the row (reversed column order), so it costs no launch."""

    def __init__(self, exact_uint8: bool):
        self.exact_uint8 = exact_uint8
        self.dtype = torch.uint8 if exact_uint8 else torch.float32
        self._reversed: Dict[Tuple[torch.device, int], torch.Tensor] = {}

    @classmethod
    def for_device(cls, device: torch.device) -> "Geometry":
        return cls(exact_uint8=device.type != "cuda")

    def place(self, row: torch.Tensor, image: torch.Tensor, plan: EncodedImage) -> None:
        """Write `plan`'s crop of `image` into `row` (3, S, S), which must be on the image's device."""
        size = [plan.crop_size, plan.crop_size]
        if plan.box is not None:
            top, left, height, width = plan.box
            resized = F.resize(self._values(F.crop(image, top, left, height, width)), size, antialias=True)
        else:
            resized = F.center_crop(F.resize(self._values(image), [plan.resize], antialias=True), size)
        if plan.flip:
            torch.index_select(resized, 2, self._reverse(resized), out=row)
        else:
            row.copy_(resized)

    def finish(self, batch: torch.Tensor) -> torch.Tensor:
        """The whole-batch end of the computation: the float form's rounding (the nearest uint8 level,
        as torchvision's cast after interpolating gives; bilinear weights are convex, so no clamping)."""
        return batch if self.exact_uint8 else batch.round_()

    def _values(self, image: torch.Tensor) -> torch.Tensor:
        # In the float form only the crop is converted (a view until then), not the whole picture.
        return image if self.exact_uint8 else image.float()

    def _reverse(self, image: torch.Tensor) -> torch.Tensor:
        """Column indices in reverse order, made once per width on the image's device (no host copy)."""
        key = (image.device, image.shape[-1])
        if key not in self._reversed:
            self._reversed[key] = torch.arange(image.shape[-1] - 1, -1, -1, device=image.device)
        return self._reversed[key]


class DeviceJpegDecoder:
    """Decodes EncodedBatches on `device` into (N, 3, S, S) batches of uint8 pixel values (normalised
    later): dtype uint8 from the exact geometry (CPU devices), float32 holding the same integer levels
    from the float geometry (CUDA; `exact_uint8` chooses the form explicitly, for tests)."""

    def __init__(self, device: torch.device, prefer: str = "auto", exact_uint8: Optional[bool] = None):
        self.device = device
        self.backend = _choose_backend(device, prefer)
        self.geometry = Geometry.for_device(device) if exact_uint8 is None else Geometry(exact_uint8)
        self._nvimgcodec = _nvimgcodec_decoder(device) if self.backend == "nvimgcodec" else None

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        """Decodes on the current CUDA stream: the training and evaluation loops run the whole stage one
        batch ahead on a side stream (data/device_stage.py)."""
        decoded = self._decode_jpegs([batch.jpeg_bytes(j) for j in range(len(batch.jpeg))])
        images: List[Optional[torch.Tensor]] = [None] * len(batch)
        for j, (k, image) in enumerate(zip(batch.jpeg, decoded)):
            if image is None:
                image = _decode_on_host(batch.jpeg_bytes(j), batch.plans[k])
                # A host decode is rare (a file the device decoder rejected): its plain copy may wait.
                image = None if image is None else image.to(self.device)
            images[k] = image
        ready_row = {k: r for r, k in enumerate(batch.worker_decoded)}
        kept = [k for k in range(len(batch)) if images[k] is not None or k in ready_row]
        batch.dropped = sorted(set(range(len(batch))) - set(kept))
        size = batch.crop_size
        out = torch.empty(len(kept), 3, size, size, dtype=self.geometry.dtype, device=self.device)
        ready = None if batch.ready is None else to_device(batch.ready, self.device)
        for row, k in enumerate(kept):
            if images[k] is not None:
                self.geometry.place(out[row], images[k], batch.plans[k])
            else:
                out[row].copy_(ready[ready_row[k]])  # already cropped and flipped in the worker
        return self.geometry.finish(out)

    def _decode_jpegs(self, encoded: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """(3, H, W) uint8 per JPEG, None where the decoder failed (retried on the host by the caller)."""
        if not encoded:
            return []
        if self._nvimgcodec is not None:
            decoder, params = self._nvimgcodec
            stream = torch.cuda.current_stream(self.device).cuda_stream

            def decode(items):
                images = decoder.decode([bytes(data.numpy()) for data in items], params=params, cuda_stream=stream)
                return [None if image is None else _hwc_to_rgb_chw(torch.from_dlpack(image)) for image in images]
            return _decode_batch_or_each(decode, encoded)
        target = self.device if self.device.type == "cuda" else "cpu"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
            return _decode_batch_or_each(lambda items: list(io.decode_jpeg(items, mode=io.ImageReadMode.RGB,
                                                                           device=target)), encoded)


def _decode_batch_or_each(decode, encoded: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """decode(encoded) for the whole batch; if that raises (one bad file fails a batched torchvision
    call), one at a time, with None for each file that still fails."""
    try:
        return decode(encoded)
    except RuntimeError:
        pass
    out: List[Optional[torch.Tensor]] = []
    for data in encoded:
        try:
            out.append(decode([data])[0])
        except RuntimeError:
            out.append(None)
    return out


def _nvimgcodec_decoder(device: torch.device):
    """An nvImageCodec decoder with the backends and CPU threads set explicitly (see the constants
    above), and its decode parameters. Older or newer releases that refuse these arguments get the
    library's defaults, with a warning, rather than no decoder."""
    from nvidia import nvimgcodec  # optional extra: pip install nvidia-nvimgcodec-cu13

    params = nvimgcodec.DecodeParams(apply_exif_orientation=False)  # as the other pipelines: pixels as stored
    kinds = [getattr(nvimgcodec.BackendKind, name) for name in NVIMGCODEC_BACKENDS
             if hasattr(nvimgcodec.BackendKind, name)]
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        decoder = nvimgcodec.Decoder(device_id=index, max_num_cpu_threads=NVIMGCODEC_CPU_THREADS,
                                     backends=[nvimgcodec.Backend(kind) for kind in kinds])
    except Exception as exc:  # the binding raises TypeError for unknown arguments, RuntimeError for others
        warnings.warn(f"nvImageCodec refused explicit backends and threads ({type(exc).__name__}: {exc}); "
                      "using its defaults")
        decoder = nvimgcodec.Decoder()
    return decoder, params


def _hwc_to_rgb_chw(image: torch.Tensor) -> torch.Tensor:
    """nvImageCodec's (H, W, C) output as (3, H, W); a single channel (grayscale) is repeated."""
    image = image.permute(2, 0, 1)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _decode_on_host(data: torch.Tensor, plan: EncodedImage) -> Optional[torch.Tensor]:
    """Second chance for a JPEG the device decoder rejected: the worker's decoder, here on the host.
    None if that fails too."""
    try:
        return decode_rgb_bytes(bytes(data.numpy()), plan.path)
    except Exception as exc:  # any decoder error: the file is unreadable
        return skip_unreadable(plan.path, exc, plan.skip_corrupt)


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
            rows = list(range(len(keep)))
            if encoded.training and keep:
                # A training batch keeps its size (one graph under torch.compile), as the other pipelines
                # replace an unreadable file: kept images, in order, fill the places of the dropped ones.
                rows += [r % len(keep) for r in range(len(dropped))]
                images = images[rows]
            targets, indices = targets[[keep[r] for r in rows]], [indices[keep[r]] for r in rows]
        images = self.normalize(images).contiguous(memory_format=self.format)
        return DeviceBatch(images, to_device(targets, self.device), indices, batch.skipped + len(encoded.dropped))


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


class Pipeline(LoaderPipeline):
    load = staticmethod(load)
    collate = staticmethod(collate)
    Stage = Stage
    prepares_ahead = True  # the stage decodes, crops and resizes: worth starting on the next batch early

    def train_transform(self):
        return TrainPlan(self.settings.train_crop, self.settings.crop_scale)

    def eval_transform(self):
        return EvalPlan(self.settings.val_crop, self.settings.val_resize, skip_corrupt=self.settings.skip_corrupt)
