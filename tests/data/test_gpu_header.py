"""The gpu pipeline reads each file's header with PIL's lazy open (no decode): the JPEG's stored size, and
which files a GPU decoder cannot take (they are decoded in the loader worker instead)."""
import io

import numpy as np
import pytest
from PIL import Image

from utils.data.common import UnreadableImage
from utils.data.gpu import gpu_decodable


def encode(mode="RGB", size=(37, 21), fmt="JPEG", **save_args) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def test_baseline_progressive_and_grayscale_jpegs():
    for mode, kwargs in (("RGB", {}), ("RGB", {"progressive": True}), ("L", {})):
        assert gpu_decodable(encode(mode, **kwargs), "x.jpg") == (21, 37)


def test_exif_and_other_segments_before_the_frame_header_are_skipped():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: a rotated photo; the header still gives the stored size
    assert gpu_decodable(encode(exif=exif.tobytes(), icc_profile=b"\0" * 300), "x.jpg") == (21, 37)


def test_cmyk_is_not_gpu_decodable():
    assert gpu_decodable(encode("CMYK"), "x.jpg") is None


def test_truncated_file_is_not_gpu_decodable():
    data = encode(size=(120, 90))
    assert gpu_decodable(data[: len(data) // 2], "x.jpg") is None


def test_non_jpeg_bytes_are_not_gpu_decodable():
    assert gpu_decodable(encode(fmt="PNG"), "x.JPEG") is None  # a PNG behind a .JPEG name: the worker decodes it
    for garbage in (b"", b"\xff\xd8\xff", b"not an image"):
        with pytest.raises(UnreadableImage):  # nothing can decode it: skipped or reported like any unreadable file
            gpu_decodable(garbage, "x.jpg")
