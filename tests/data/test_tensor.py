"""The tensor input pipeline matches the PIL one: same augmentation draws, same evaluation images to
within rounding, same decoding of unusual files."""

import numpy as np
import torch
from PIL import Image

from tests.helpers import photo_like
from utils.data.pil import eval_transform, train_transform
from utils.data.tensor import Normalize as DeviceNormalize
from utils.data.tensor import eval_transform as eval_transform_uint8
from utils.data.tensor import load as decode_rgb
from utils.data.tensor import train_transform as train_transform_uint8


def normalised(uint8_chw):
    return DeviceNormalize(torch.device("cpu"))(uint8_chw[None])[0]


def test_eval_images_match_pil_within_rounding(tmp_path):
    path = photo_like(tmp_path / "a.jpg")
    reference = eval_transform(112, 128)(Image.open(path).convert("RGB"))
    ours = normalised(eval_transform_uint8(112, 128)(decode_rgb(str(path))))
    assert ours.shape == reference.shape == (3, 112, 112)
    diff = (ours - reference).abs()
    # One uint8 step is 1 / (255 * 0.225) = 0.017 after normalisation.
    assert diff.mean() < 0.02 and diff.max() < 0.25, (diff.mean(), diff.max())


def test_train_augmentation_draws_the_same_crops_and_flips(tmp_path):
    path = photo_like(tmp_path / "a.jpg", seed=1)
    pil_image, tensor_image = Image.open(path).convert("RGB"), decode_rgb(str(path))
    for seed in range(8):
        torch.manual_seed(seed)
        reference = train_transform(64)(pil_image)
        torch.manual_seed(seed)
        ours = normalised(train_transform_uint8(64)(tensor_image))
        # Same seed, same RNG calls: the same crop box and flip, so only resampling differs.
        assert (ours - reference).abs().mean() < 0.03, seed


def test_decoding_unusual_files_equals_pil(tmp_path):
    files = {"cmyk.JPEG": Image.new("CMYK", (30, 20), (0, 200, 200, 0)),
             "gray.JPEG": Image.new("L", (30, 20), 90), "png_named.JPEG": Image.new("RGB", (30, 20), (5, 6, 7))}
    for name, image in files.items():
        path = str(tmp_path / name)
        image.save(path, format="PNG" if name.startswith("png") else "JPEG")
        expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        ours = decode_rgb(path)
        assert ours.shape == expected.shape and (ours.int() - expected.int()).abs().max() <= 2, name
