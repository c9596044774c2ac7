"""Read a JPEG's size and colour layout from its header, without decoding it.

The GPU input pipeline needs an image's height and width in the loader workers, to draw the random
crop there (as the official augmentation does), and needs to know which files a GPU decoder cannot
take (CMYK/YCCK, 12-bit, lossless, arithmetic-coded, or not JPEG at all) so they go through PIL.
"""
from dataclasses import dataclass
from typing import Optional

# Start-of-frame markers carry the frame size; the others between C0 and CF are DHT (C4), JPG (C8)
# and DAC (CC). C0 baseline, C1 extended, C2 progressive: what GPU decoders take. C3 lossless,
# C5-C7 hierarchical, C9-CB and CD-CF arithmetic coding: rare, and left to PIL.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_GPU_DECODABLE_SOF = {0xC0, 0xC1, 0xC2}
# Markers without a length field: TEM and the restart markers RST0-RST7.
_STANDALONE = {0x01} | set(range(0xD0, 0xD8))


@dataclass(frozen=True)
class JpegInfo:
    height: int
    width: int
    components: int   # 1 grayscale, 3 YCbCr/RGB, 4 CMYK/YCCK
    precision: int    # bits per sample
    sof: int          # the start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    complete: bool    # the data ends with the end-of-image marker (a truncated file does not)

    @property
    def gpu_decodable(self) -> bool:
        """Whether nvJPEG/nvImageCodec can decode it into the RGB we need; the rest goes through PIL."""
        return (self.sof in _GPU_DECODABLE_SOF and self.precision == 8 and self.components in (1, 3)
                and self.complete and self.height > 0 and self.width > 0)


def read_jpeg_info(data: bytes) -> Optional[JpegInfo]:
    """The frame header of a JPEG, or None when `data` is not a JPEG with a readable frame header."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None  # lost sync: not a well-formed marker segment sequence
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if pos + 10 > end:
                return None
            precision = data[pos + 4]
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            components = data[pos + 9]
            complete = data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
            return JpegInfo(height, width, components, precision, marker, complete)
        pos += 2 + length
    return None
