"""The header reader finds every JPEG's size and tells the files a GPU decoder cannot take."""
import io

import numpy as np
from PIL import Image

from utils.jpeg_header import read_jpeg_info


def encode(mode="RGB", size=(37, 21), fmt="JPEG", **save_args) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def test_baseline_progressive_and_grayscale_jpegs():
    for mode, kwargs, sof, components in (("RGB", {}, 0xC0, 3), ("RGB", {"progressive": True}, 0xC2, 3),
                                          ("L", {}, 0xC0, 1)):
        info = read_jpeg_info(encode(mode, **kwargs))
        assert (info.height, info.width, info.components, info.sof, info.precision) == (21, 37, components, sof, 8)
        assert info.complete and info.gpu_decodable


def test_exif_and_other_segments_before_the_frame_header_are_skipped():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: a rotated photo; the header still gives the stored size
    info = read_jpeg_info(encode(exif=exif.tobytes(), icc_profile=b"\0" * 300))
    assert (info.height, info.width) == (21, 37) and info.gpu_decodable


def test_cmyk_is_not_gpu_decodable():
    info = read_jpeg_info(encode("CMYK"))
    assert info.components == 4 and not info.gpu_decodable


def test_truncated_file_is_not_gpu_decodable():
    data = encode(size=(120, 90))
    info = read_jpeg_info(data[: len(data) // 2])
    assert info is not None and not info.complete and not info.gpu_decodable


def test_non_jpeg_bytes_give_none():
    assert read_jpeg_info(encode(fmt="PNG")) is None
    assert read_jpeg_info(b"") is None
    assert read_jpeg_info(b"\xff\xd8\xff") is None
    assert read_jpeg_info(b"\xff\xd8\x00\x00\x00\x00") is None  # lost marker sync
    assert read_jpeg_info(b"\xff\xd8\xff\xda\x00\x04\x00\x00") is None  # scan before any frame header
