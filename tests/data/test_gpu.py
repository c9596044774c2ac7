"""The gpu input pipeline, run with its CPU decoder: the images it builds equal the tensor pipeline's
pixel for pixel (same crop draws, same decode, same resize), unusual files take the worker fallback,
and files no decoder can read are skipped in training and reported in evaluation."""
import os
import re

import pytest
import torch
from PIL import Image

from tests.helpers import make_image_folder, photo_like
from utils.data import gpu
from utils.data.common import CorruptImageError, ImageFolder, SeededSamples
from utils.data.gpu import DeviceJpegDecoder, EncodedBatch, EvalPlan, TrainPlan
from utils.data.gpu import load as read_encoded
from utils.data.tensor import eval_transform as eval_transform_uint8
from utils.data.tensor import load as decode_rgb
from utils.data.tensor import train_transform as train_transform_uint8

CPU = torch.device("cpu")
# A frame header and an end-of-image marker, no scan: the header reader accepts it, no decoder can.
HEADER_ONLY_JPEG = bytes.fromhex("ffd8" "ffc0000b08001000100111" "00" "ffd9")


def decode_one(plan, path) -> torch.Tensor:
    return DeviceJpegDecoder(CPU)(EncodedBatch([plan(read_encoded(str(path)))]))[0]


def test_training_crops_equal_the_tensor_pipeline(tmp_path):
    path = photo_like(tmp_path / "a.jpg", size=(150, 110), seed=2)
    flips = set()
    for seed in range(10):
        torch.manual_seed(seed)
        expected = train_transform_uint8(48)(decode_rgb(str(path)))
        torch.manual_seed(seed)
        sample = TrainPlan(48)(read_encoded(str(path)))
        flips.add(sample.flip)
        assert sample.data is not None and sample.ready is None  # planned in the worker, decoded later
        assert torch.equal(DeviceJpegDecoder(CPU)(EncodedBatch([sample]))[0], expected), seed
    assert flips == {True, False}


def test_evaluation_images_equal_the_tensor_pipeline(tmp_path):
    for size in ((150, 110), (90, 140)):
        path = photo_like(tmp_path / f"{size[0]}.jpg", size=size)
        expected = eval_transform_uint8(64, 73)(decode_rgb(str(path)))
        assert torch.equal(decode_one(EvalPlan(64, 73), path), expected), size


def test_files_a_gpu_decoder_cannot_take_are_decoded_in_the_worker(tmp_path):
    files = {"cmyk.JPEG": Image.new("CMYK", (50, 40), (0, 200, 200, 0)),
             "png_named.JPEG": Image.new("RGB", (50, 40), (5, 6, 7))}
    for name, image in files.items():
        path = str(tmp_path / name)
        image.save(path, format="PNG" if name.startswith("png") else "JPEG")
        sample = EvalPlan(32, 36)(read_encoded(path))
        assert sample.data is None and sample.ready is not None, name
        expected = eval_transform_uint8(32, 36)(decode_rgb(path))
        assert torch.equal(DeviceJpegDecoder(CPU)(EncodedBatch([sample]))[0], expected), name


def batch_with_an_undecodable_jpeg(tmp_path, plan):
    good = [photo_like(tmp_path / f"{i}.jpg", size=(60, 50), seed=i) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(HEADER_ONLY_JPEG)
    samples = [(plan(read_encoded(str(p))), target, index) for index, (p, target) in
               enumerate([(good[0], 0), (bad, 1), (good[1], 2), (good[2], 3)])]
    host = gpu.collate(samples)
    assert isinstance(host.images, EncodedBatch) and host.skipped == 0  # the header passed the worker's check
    return host


def test_training_batch_with_an_undecodable_jpeg_keeps_its_size(tmp_path, capsys):
    """The file is dropped and counted; a kept image (with its target) takes its place, so the batch keeps
    the shape the compiled model was built for."""
    host = batch_with_an_undecodable_jpeg(tmp_path, TrainPlan(32))
    batch = gpu.Stage(CPU, False)(host)
    assert host.images.dropped == [1] and batch.skipped == 1
    assert batch.images.shape == (4, 3, 32, 32) and batch.targets.tolist() == [0, 2, 3, 0]
    assert batch.indices == [0, 2, 3, 0] and torch.equal(batch.images[3], batch.images[0])
    assert "bad.jpg" in capsys.readouterr().err


def test_evaluation_batch_with_an_undecodable_jpeg_leaves_it_out(tmp_path, capsys):
    host = batch_with_an_undecodable_jpeg(tmp_path, EvalPlan(32, 36, skip_corrupt=True))
    batch = gpu.Stage(CPU, False)(host)
    assert batch.images.shape == (3, 3, 32, 32) and batch.targets.tolist() == [0, 2, 3] and batch.skipped == 1
    assert batch.indices == [0, 2, 3]


def test_evaluation_reports_an_undecodable_jpeg_unless_told_to_skip(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(HEADER_ONLY_JPEG)
    with pytest.raises(CorruptImageError, match=re.escape(str(bad)) + ".*--skip-corrupt"):
        decode_one(EvalPlan(32, 36), bad)
    batch = EncodedBatch([EvalPlan(32, 36, skip_corrupt=True)(read_encoded(str(bad)))])
    assert DeviceJpegDecoder(CPU)(batch).shape == (0, 3, 32, 32) and batch.dropped == [0]


def test_broken_file_without_a_jpeg_header_is_skipped_in_the_worker(tmp_path):
    data = make_image_folder(tmp_path / "d", n_classes=1, train_per_class=2, val_per_class=1, splits=("train",))
    broken = os.path.join(data, "train", "class0", "img0.jpg")
    with open(broken, "wb") as f:
        f.write(b"not an image at all")
    folder = ImageFolder(os.path.join(data, "train"), TrainPlan(32), read_encoded)
    assert SeededSamples(folder, seed=0)[0] is None  # PIL's error, caught as in the other pipelines
    assert SeededSamples(folder, seed=0)[1] is not None


def test_a_batch_survives_the_pin_memory_step_of_cuda_loaders(tmp_path, monkeypatch):
    """On CUDA the loader passes every batch through pin_memory: the EncodedBatch must come out as an
    EncodedBatch holding the same samples, with its buffers (JPEG bytes, worker-decoded crops) pinned.
    Pinning needs a GPU, so here Tensor.pin_memory is replaced by a stand-in that records its calls."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned_from = []

    def fake_pin(tensor):
        pinned_from.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    path = photo_like(tmp_path / "a.jpg", size=(60, 50))
    cmyk = str(tmp_path / "cmyk.JPEG")
    Image.new("CMYK", (50, 40), (0, 200, 200, 0)).save(cmyk)
    batch = EncodedBatch([TrainPlan(32)(read_encoded(str(path))), EvalPlan(32, 36)(read_encoded(str(path))),
                          EvalPlan(32, 36)(read_encoded(cmyk))])
    pinned = pin_memory(batch)
    assert isinstance(pinned, EncodedBatch) and len(pinned) == 3
    assert all(a is b for a, b in zip(pinned.plans, batch.plans))
    assert [id(t) for t in pinned_from] == [id(batch.data), id(batch.ready)] and pinned.data is not batch.data
    assert torch.equal(pinned.data, batch.data) and torch.equal(pinned.ready, batch.ready)
    assert pinned.jpeg == [0, 1] and pinned.worker_decoded == [2]


def test_decoder_output_layout_conversion():
    """What the nvImageCodec path does to its (H, W, C) images, checked on CPU tensors."""
    from utils.data.gpu import _hwc_to_rgb_chw

    rgb = torch.arange(2 * 3 * 3, dtype=torch.uint8).view(2, 3, 3)
    assert torch.equal(_hwc_to_rgb_chw(rgb), rgb.permute(2, 0, 1))
    gray = torch.arange(6, dtype=torch.uint8).view(2, 3, 1)
    assert torch.equal(_hwc_to_rgb_chw(gray), gray.permute(2, 0, 1).expand(3, 2, 3))
