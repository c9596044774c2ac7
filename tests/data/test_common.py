"""utils/data/common.py: what an image file is, decoding to 8-bit RGB the same way on every pipeline, and
the unreadable-file policy."""
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import build_test_pipeline, make_image_folder
from utils.data.common import (CorruptImageError, ImageFolder, SeededSamples, UnreadableImage, decode_pil,
                               is_image_file, open_image)
from utils.data.tensor import load as tensor_load
from utils.data.dataset_checks import check_dataset


def png_16bit_gray(path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path, format="PNG")


def unusual_images(folder):
    """Files every pipeline must decode to the same 8-bit RGB: name -> writer."""
    rng = np.random.default_rng(0)
    gradient = (np.arange(40 * 30).reshape(30, 40) * 54).astype(np.uint16)  # up to 64746: far above 255
    files = {
        "gray16.png": lambda p: png_16bit_gray(p, gradient),
        "palette.png": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).convert(
            "P", palette=Image.ADAPTIVE, colors=16).save(p),
        "gray_alpha.png": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40, 2), dtype=np.uint8), "LA").save(p),
        "rgba.png": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40, 4), dtype=np.uint8), "RGBA").save(p),
        "cmyk.JPEG": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40, 4), dtype=np.uint8), "CMYK").save(
            p, format="JPEG"),
        "png_inside.JPEG": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
            p, format="PNG"),
        "gray.jpg": lambda p: Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8), "L").save(p),
    }
    paths = {}
    for name, write in files.items():
        paths[name] = os.path.join(folder, name)
        write(paths[name])
    return paths


def test_image_file_rule_skips_hidden_and_appledouble_files():
    assert is_image_file("n01/img.JPEG") and is_image_file("a.png")
    for name in ("._img.JPEG", ".hidden.jpg", "notes.txt", "img.JPEG.partial-x1"):
        assert not is_image_file(name), name


def test_checks_and_loader_agree_on_what_an_image_is(tmp_path):
    data = make_image_folder(tmp_path / "d", n_classes=2, train_per_class=3, val_per_class=2)
    for split in ("train", "val"):
        (tmp_path / "d" / split / "class0" / "._img0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        (tmp_path / "d" / split / ".ipynb_checkpoints").mkdir()
        (tmp_path / "d" / split / ".ipynb_checkpoints" / "img.jpg").write_bytes(b"x")
    classes, train_images = check_dataset(data, need_train=True)
    folder = ImageFolder(os.path.join(data, "train"), None, decode_pil)
    assert classes == folder.classes == ["class0", "class1"] and train_images == len(folder) == 6


def test_sixteen_bit_images_keep_their_range(tmp_path):
    """PIL's own conversion clips every 16-bit value above 255 to white; ours keeps the high byte."""
    path = str(tmp_path / "half.png")
    png_16bit_gray(path, np.full((4, 4), 32768))
    assert Image.open(path).convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # what plain PIL would give
    for decoded in (np.asarray(decode_pil(path)), tensor_load(path).permute(1, 2, 0).numpy()):
        assert decoded.shape == (4, 4, 3) and (decoded == 128).all()


def test_unusual_files_decode_to_the_same_pixels_on_every_pipeline(tmp_path):
    for name, path in unusual_images(tmp_path).items():
        reference = torch.from_numpy(np.asarray(decode_pil(path)).copy()).permute(2, 0, 1)
        ours = tensor_load(path)
        assert ours.dtype == torch.uint8 and ours.shape == reference.shape == (3, 30, 40), name
        assert torch.equal(ours, reference), name


@pytest.mark.parametrize("backend", ["pil", "tensor", "gpu"])
def test_evaluation_batches_of_unusual_files_agree_across_pipelines(tmp_path, backend):
    """The whole path (decode, resize, crop, normalise) through each pipeline, against the pil pipeline:
    equal up to the resampling difference between PIL and tensor resizing."""
    root = tmp_path / "data"
    (root / "val" / "c0").mkdir(parents=True)
    unusual_images(root / "val" / "c0")

    def batch_of(name):
        pipeline = build_test_pipeline(root, name, need_train=False, crop=24, resize=28, batch=8, num_classes=1)
        return pipeline.first_val_batch(8)

    reference, ours = batch_of("pil"), batch_of(backend)
    assert ours.images.shape == reference.images.shape == (7, 3, 24, 24)
    # One uint8 step is 1 / (255 * 0.225) = 0.017 after normalisation; resampling differs by a few steps.
    assert (ours.images - reference.images).abs().mean() < 0.05


def test_decompression_bomb_header_is_an_unreadable_image(tmp_path):
    """A PNG whose header claims 20000 x 20000 pixels: PIL refuses it (DecompressionBombError, not an
    OSError); it is an unreadable file like any other, skipped in training and an error in evaluation."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    with pytest.raises(UnreadableImage, match="DecompressionBomb"):
        open_image(bomb, "bomb.png")
    folder = tmp_path / "c0"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb)
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    dataset = ImageFolder(str(tmp_path), None, decode_pil)
    assert SeededSamples(dataset, seed=0, skip_corrupt=True)[0] is None
    with pytest.raises(CorruptImageError, match="bomb.png"):
        SeededSamples(dataset, seed=None, skip_corrupt=False)[0]


def test_training_replaces_an_unreadable_image_and_counts_it(tmp_path):
    """The next readable image takes its place (batches keep their size), drawn with its augmentation seed."""
    from utils.data.common import collate_tensors

    folder = tmp_path / "c0"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(folder / f"{i}.png")
    (folder / "1.png").write_bytes(b"broken")
    import torchvision.transforms as T

    dataset = ImageFolder(str(tmp_path), T.PILToTensor(), decode_pil)
    samples = SeededSamples(dataset, seed=0, replace_unreadable=True)
    replaced = samples[1]
    assert replaced[2] == 2 and replaced[3] == 1 and torch.equal(replaced[0], samples[2][0])
    batch = collate_tensors([samples[i] for i in range(4)])
    assert batch.images.shape[0] == 4 and batch.skipped == 1 and batch.indices == [0, 2, 2, 3]
    assert SeededSamples(dataset, seed=0)[1] is None  # evaluation: left out, never replaced


class _Draws(torch.utils.data.Dataset):
    """What an augmentation draws for a sample, from torch's global generator, instead of pixels."""

    def __len__(self):
        return 24

    def __getitem__(self, index):
        return torch.rand(3), index


def test_each_samples_augmentation_is_the_same_with_any_number_of_workers():
    """A sample's random draws depend on (seed, epoch, index) only: not on the worker that reads it, nor on
    how many workers there are, nor on the order of reading; and the main process's generator is untouched."""
    from torch.utils.data import DataLoader

    from utils.data.common import SeededSamples

    samples = SeededSamples(_Draws(), seed=7)
    samples.set_epoch(3)
    by_workers = {}
    for workers in (0, 1, 2):
        loader = DataLoader(samples, batch_size=5, num_workers=workers, shuffle=workers == 2)
        draws = {}
        for values, _targets, indices in loader:  # SeededSamples yields (sample, target, index)
            draws.update({int(i): v for i, v in zip(indices, values)})
        by_workers[workers] = draws
    for workers in (1, 2):
        assert all(torch.equal(by_workers[workers][i], by_workers[0][i]) for i in range(24)), workers
    assert not torch.equal(by_workers[0][0], by_workers[0][1])  # samples differ from one another
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    samples[5]
    assert torch.equal(torch.rand(1), expected)  # reading a sample leaves the caller's generator as it was
