"""The gpu pipeline's batch type and device-side geometry, checked on the CPU.

A collated batch is one buffer of JPEG bytes plus one tensor of worker-decoded crops, whatever the batch
size (so a loader's shared-memory handles do not grow with it). The geometry has two forms: the exact
uint8 form (CPU devices; equal to the tensor pipeline, tested in test_data_gpu.py) and the float form that
runs on CUDA, constructed here explicitly and compared with torchvision's float path (resized_crop or
resize + center_crop on float input, then round): equal to the last bit, since it is the same computation.
"""
import os
import subprocess
import sys
import textwrap

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from tests.helpers import ROOT, make_image_folder, photo_like
from utils.data import gpu
from utils.data.common import ImageFolder, SeededSamples
from utils.data.gpu import DeviceJpegDecoder, EncodedBatch, EvalPlan, Geometry, TrainPlan
from utils.data.gpu import load as read_encoded
from utils.data.tensor import load as decode_rgb

CPU = torch.device("cpu")
HEADER_ONLY_JPEG = bytes.fromhex("ffd8" "ffc0000b08001000100111" "00" "ffd9")  # no decoder can read it


def float_reference(image: torch.Tensor, sample) -> torch.Tensor:
    """What torchvision computes for a uint8 CUDA image, run on the CPU: float, interpolate, round."""
    size = [sample.crop_size, sample.crop_size]
    if sample.box is not None:
        out = F.resized_crop(image.float(), *sample.box, size, antialias=True)
    else:
        out = F.center_crop(F.resize(image.float(), [sample.resize], antialias=True), size)
    out = out.round()
    return F.horizontal_flip(out) if sample.flip else out


def place_one(geometry: Geometry, image: torch.Tensor, sample) -> torch.Tensor:
    row = torch.full((1, 3, sample.crop_size, sample.crop_size), 251, dtype=geometry.dtype)  # poison: unwritten shows
    geometry.place(row[0], image, sample)
    return geometry.finish(row)[0]


def test_float_geometry_equals_torchvision_float_path_for_training_crops(tmp_path):
    path = str(photo_like(tmp_path / "a.jpg", size=(150, 110), seed=4))
    image = decode_rgb(path)
    geometry = Geometry(exact_uint8=False)
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        sample = TrainPlan(48)(read_encoded(path))
        flips.add(sample.flip)
        got = place_one(geometry, image, sample)
        assert got.dtype == torch.float32 and torch.equal(got, float_reference(image, sample)), seed
    assert flips == {True, False}


def test_float_geometry_equals_torchvision_float_path_for_evaluation(tmp_path):
    geometry = Geometry(exact_uint8=False)
    for size in ((150, 110), (90, 140), (73, 73)):
        path = str(photo_like(tmp_path / f"{size[0]}x{size[1]}.jpg", size=size))
        image, sample = decode_rgb(path), EvalPlan(64, 73)(read_encoded(path))
        assert torch.equal(place_one(geometry, image, sample), float_reference(image, sample)), size


def test_the_two_forms_differ_by_rounding_at_most(tmp_path):
    """The uint8 CPU resize and the float one compute the same filter; only the rounding differs."""
    path = str(photo_like(tmp_path / "a.jpg", size=(150, 110), seed=1))
    image = decode_rgb(path)
    for seed in range(4):
        torch.manual_seed(seed)
        sample = TrainPlan(40)(read_encoded(path))
        exact = place_one(Geometry(exact_uint8=True), image, sample)
        approx = place_one(Geometry(exact_uint8=False), image, sample)
        assert exact.dtype == torch.uint8 and (exact.float() - approx).abs().max() <= 1


def test_the_form_is_chosen_by_the_device():
    assert Geometry.for_device(CPU).exact_uint8 and not Geometry.for_device(torch.device("cuda")).exact_uint8


def test_float_form_decoder_on_a_mixed_batch(tmp_path, capsys):
    """JPEGs decoded and placed by the float form, a worker-decoded CMYK crop copied into its row, an
    undecodable JPEG left out: rows in batch order, each equal to its reference."""
    jpegs = [str(photo_like(tmp_path / f"{i}.jpg", size=(70 + 9 * i, 60), seed=i)) for i in range(3)]
    cmyk, bad = str(tmp_path / "cmyk.JPEG"), tmp_path / "bad.jpg"
    Image.new("CMYK", (50, 40), (0, 200, 200, 0)).save(cmyk)
    bad.write_bytes(HEADER_ONLY_JPEG)
    torch.manual_seed(0)
    plan = TrainPlan(32)
    samples = [plan(read_encoded(p)) for p in (jpegs[0], cmyk, str(bad), jpegs[1], jpegs[2])]
    batch = EncodedBatch(samples)
    out = DeviceJpegDecoder(CPU, exact_uint8=False)(batch)
    assert out.dtype == torch.float32 and out.shape == (4, 3, 32, 32) and batch.dropped == [2]
    expected = [float_reference(decode_rgb(jpegs[0]), samples[0]), samples[1].ready.float(),
                float_reference(decode_rgb(jpegs[1]), samples[3]), float_reference(decode_rgb(jpegs[2]), samples[4])]
    for row, want in enumerate(expected):
        assert torch.equal(out[row], want), row
    assert "bad.jpg" in capsys.readouterr().err


def test_a_batch_is_one_buffer_of_bytes_and_one_of_crops(tmp_path):
    paths = [str(photo_like(tmp_path / f"{i}.jpg", size=(60 + i, 50), seed=i)) for i in range(5)]
    cmyk = str(tmp_path / "cmyk.JPEG")
    Image.new("CMYK", (50, 40), (0, 200, 200, 0)).save(cmyk)
    samples = [TrainPlan(32)(read_encoded(p)) for p in paths[:3] + [cmyk] + paths[3:]]
    batch = EncodedBatch(samples)
    tensors = [v for v in vars(batch).values() if isinstance(v, torch.Tensor)]
    assert len(tensors) == 2 and batch.data.dim() == 1 and batch.ready.shape == (1, 3, 32, 32)
    assert batch.jpeg == [0, 1, 2, 4, 5] and batch.worker_decoded == [3]
    for j, p in enumerate(paths):
        with open(p, "rb") as f:
            assert bytes(batch.jpeg_bytes(j).numpy()) == f.read(), p
    assert torch.equal(batch.ready[0], samples[3].ready)
    assert all(plan.data is None and plan.ready is None for plan in batch.plans)  # no second copy


def test_batches_collated_in_loader_workers_hold_the_files(tmp_path):
    """The collate allocates its buffers in shared memory when it runs in a worker: the batches that reach
    the main process hold each file's bytes and the targets of their samples."""
    data = make_image_folder(tmp_path / "d", n_classes=2, train_per_class=5, val_per_class=1, splits=("train",))
    folder = ImageFolder(os.path.join(data, "train"), TrainPlan(24), read_encoded)
    loader = torch.utils.data.DataLoader(SeededSamples(folder, seed=0), batch_size=4, num_workers=2,
                                         collate_fn=gpu.collate)
    seen = []
    for host in loader:
        assert isinstance(host.images, EncodedBatch) and len(host.images) == len(host.indices)
        for j, k in enumerate(host.images.jpeg):
            path, target = folder.samples[host.indices[k]]
            with open(path, "rb") as f:
                assert bytes(host.images.jpeg_bytes(j).numpy()) == f.read()
            assert host.targets[k].item() == target
        seen += host.indices
    assert sorted(seen) == list(range(len(folder)))


def test_a_loader_with_few_file_descriptors_runs(tmp_path):
    """With one tensor per image, each batch in flight held one shared-memory file descriptor per image
    (here 2 workers x prefetch 4 x 32 images = 256), and under `ulimit -n 64` the loader stalled; the
    DataLoader's timeout turns such a stall into an error."""
    data = make_image_folder(tmp_path / "d", n_classes=2, train_per_class=64, val_per_class=1, splits=("train",))
    script = textwrap.dedent(f"""
        import os, resource, sys
        import torch
        sys.path.insert(0, {ROOT!r})
        from utils.data import gpu
        from utils.data.common import ImageFolder, SeededSamples
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        folder = ImageFolder(os.path.join({data!r}, "train"), gpu.TrainPlan(24), gpu.load)
        loader = torch.utils.data.DataLoader(SeededSamples(folder, seed=0), batch_size=32, num_workers=2,
                                             prefetch_factor=4, collate_fn=gpu.collate, timeout=60)
        print("images", sum(len(host.indices) for host in loader))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "images 128" in result.stdout
