"""The tensor input pipeline matches the PIL one: same augmentation draws, same evaluation images to
within rounding, same decoding of unusual files."""
import os

import numpy as np
import torch
from PIL import Image

import main
from tests.helpers import TINY, make_image_folder
from utils.data import eval_transform, train_transform
from utils.runner import run
from utils.tensor_data import DeviceNormalize, decode_rgb, eval_transform_uint8, train_transform_uint8


def photo_like(path, size=(180, 140), seed=0):
    """Smooth gradients plus texture: resizing differences show up, unlike on flat colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) % 64 * 4], -1)
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=95)
    return path


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


def test_tensor_backend_trains_and_skips_unreadable_files(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    with open(os.path.join(data, "train", "class0", "img1.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff broken")
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--data-backend", "tensor", "--output-dir",
                str(tmp_path / "r"), *TINY, "-b", "4", data], main.RECIPE, main.BUILTIN, "")
    out = capsys.readouterr().out
    assert code == 0 and "skipped 1 unreadable images" in out
