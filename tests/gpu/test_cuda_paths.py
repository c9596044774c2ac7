"""Correctness of the CUDA-only paths, for a session with a GPU (the CPU tests cover the rest); every check is
a pytest test that skips without CUDA:

1. the fused BN + ECA + residual form against the reference layers on CUDA, eager and compiled, fp32
   and bf16 autocast: outputs, input and parameter gradients, running statistics. With TF32 off
   throughout (the reference and the fused path would otherwise differ by TF32's ~5e-4, not by fp32
   rounding), restored afterwards;
2. the gpu input pipeline's device geometry (float crop + resize + flip on CUDA) against the same
   computation on the CPU, on identical decoded images;
3. the gpu input pipeline's device decoders (torchvision nvJPEG, and nvImageCodec when installed)
   against the same pipeline decoding on the CPU, on generated photo-like JPEGs;
4. the gpu pipeline from a DataLoader with workers and pin_memory=True to the CUDA device stage: the
   loader pins the batch's buffers, and the stage's images match the CPU stage's.

    python -m pytest tests/gpu -v                           # as tests
    python tests/gpu/test_cuda_paths.py --json gpu_checks.json  # as a report (scripts/benchmarks/gpu_session.sh)

As a script it prints one line per check with the measured relative error or pixel difference and PASS/FAIL
as it goes, rewrites the JSON file after each check (a time limit keeps the checks done), and exits non-zero if
any check fails. As tests, each check's rows must all pass; a failure names the rows with their numbers.
"""
import argparse
import contextlib
import copy
import os
import sys
import tempfile
import warnings

import pytest
import torch
from torch import nn

# The repository root (this file is tests/gpu/test_cuda_paths.py), for the script form.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models.attention import set_eca_implementation  # noqa: E402
from models.resnet import Bottleneck  # noqa: E402
from scripts.benchmarks.make_jpeg_folder import make_image  # noqa: E402
from utils.data import gpu, make_stage  # noqa: E402
from utils.data.common import HostBatch, ImageFolder, SeededSamples  # noqa: E402
from utils.data.gpu import DeviceJpegDecoder, EncodedBatch, EvalPlan, Geometry, TrainPlan  # noqa: E402
from utils.data.gpu import load as read_encoded  # noqa: E402
from utils.data.gpu import nvimgcodec_available  # noqa: E402
from utils.data.tensor import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from utils.data.tensor import load as decode_on_cpu  # noqa: E402
from utils.running.files import write_json  # noqa: E402


@contextlib.contextmanager
def tf32_disabled():
    """fp32 matrix products and convolutions in full fp32 (no TF32) inside; the previous switches after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def step(model, x, dtype):
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(x)
    (out.float() * torch.linspace(-1, 1, out.numel(), device=x.device).view_as(out)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    return [out.detach(), x.grad] + grads


def check_fused_eca(device):
    with tf32_disabled():
        yield from _fused_eca_rows(device)


def _fused_eca_rows(device):
    for compiled in (False, True):
        for dtype in (None, torch.bfloat16):
            torch.manual_seed(0)
            downsample = nn.Sequential(nn.Conv2d(64, 256, 1, 2, bias=False), nn.BatchNorm2d(256))
            block = Bottleneck(64, 64, 2, downsample, attention="eca", k_size=5).to(device)
            block = block.to(memory_format=torch.channels_last)
            reference = set_eca_implementation(block, "conv")
            fused = set_eca_implementation(copy.deepcopy(block), "fused")
            truth_model = copy.deepcopy(reference)
            runner = torch.compile(fused) if compiled else fused
            x = (torch.randn(32, 64, 28, 28, device=device) + 0.3).to(memory_format=torch.channels_last)
            truth = step(truth_model, x, None)       # fp32 reference: what both are measured against
            ref = step(reference, x, dtype)
            got = step(runner, x, dtype)
            errors = [(rel(g, t), rel(r, t)) for g, r, t in zip(got, ref, truth)]
            # fp32: fused equals the reference to fp32 rounding; bf16: no less accurate than the reference.
            ok = all(e_got <= (1e-4 if dtype is None else 1.5 * e_ref + 1e-3) for e_got, e_ref in errors)
            buffers_ok = all(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4)
                             for a, b in zip(reference.buffers(), fused.buffers()))
            yield {"check": f"fused ECA block, {'compiled' if compiled else 'eager'}, {'bf16' if dtype else 'fp32'}",
                   "max_rel_error_fused": max(e for e, _ in errors),
                   "max_rel_error_reference": max(e for _, e in errors), "ok": ok and buffers_ok}


def jpeg_files(count: int, root=None) -> list:
    """ImageNet-sized photo-like JPEGs of several aspect ratios, one class folder (for ImageFolder)."""
    folder = os.path.join(root or tempfile.mkdtemp(), "class0")
    os.makedirs(folder)
    paths = [os.path.join(folder, f"{i}.jpg") for i in range(count)]
    for seed, path in enumerate(paths):
        make_image(path, seed)
    return paths


def plans():
    return (("train", TrainPlan(224)), ("eval", EvalPlan(224, 256)))


def check_geometry(device, paths):
    """The float geometry on CUDA vs the same on the CPU, on the same decoded images: the same filter,
    so at most a rounding flip (1 level) where the two devices' float sums differ in the last bit."""
    cuda_form, cpu_form = Geometry.for_device(device), Geometry(exact_uint8=False)
    images = [decode_on_cpu(p) for p in paths]
    for plan_name, plan in plans():
        torch.manual_seed(0)
        samples = [plan(read_encoded(p)) for p in paths]
        got = torch.stack([one_row(cuda_form, image.to(device), s).cpu() for image, s in zip(images, samples)])
        want = torch.stack([one_row(cpu_form, image, s) for image, s in zip(images, samples)])
        diff = (got - want).abs()
        worst, differing = diff.max().item(), (diff > 0).float().mean().item()
        yield {"check": f"float geometry on {device.type} vs CPU ({plan_name} crops)", "max_abs_diff": worst,
               "fraction_differing": differing, "ok": not cuda_form.exact_uint8 and worst <= 1 and differing < 0.01}


def one_row(geometry: Geometry, image: torch.Tensor, sample) -> torch.Tensor:
    # Poisoned: a row the geometry failed to write shows.
    row = torch.full((1, 3, sample.crop_size, sample.crop_size), 251, device=image.device, dtype=geometry.dtype)
    geometry.place(row[0], image, sample)
    return geometry.finish(row)[0]


def check_decoders(device, paths):
    backends = ["torchvision"] + (["nvimgcodec"] if nvimgcodec_available() else [])
    for plan_name, plan in plans():
        torch.manual_seed(0)
        samples = [plan(read_encoded(p)) for p in paths]
        expected = DeviceJpegDecoder(torch.device("cpu"))(EncodedBatch(samples)).int()
        for backend in backends:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                decoder = DeviceJpegDecoder(device, prefer=backend)
            got = decoder(EncodedBatch(samples)).cpu().int()
            diff = (got - expected).abs().float()
            # Different IDCT and chroma upsampling: a few levels here and there, nothing systematic.
            ok = got.shape == expected.shape and diff.mean().item() < 2.0
            yield {"check": f"{backend} decode ({plan_name} crops) vs CPU", "mean_abs_diff": diff.mean().item(),
                   "max_abs_diff": diff.max().item(), "ok": ok}
            if backend == "nvimgcodec":  # the explicit backends and threads were accepted, not replaced by defaults
                refused = [str(w.message) for w in caught if "nvImageCodec" in str(w.message)]
                yield {"check": "nvImageCodec decoder built with explicit backends and CPU threads",
                       "ok": not refused, "note": "; ".join(refused)}


def pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """Normalised images back to 0..255 levels, to compare two stages' outputs in pixel units."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
    return images.float() * std + mean


def check_loader_to_stage(device, paths):
    """DataLoader(workers, pin_memory=True) -> gpu.Stage on CUDA, against gpu.Stage on the CPU on the same
    host batch: the batch's buffers arrive pinned, and the images agree to within decoder differences."""
    folder = ImageFolder(os.path.dirname(os.path.dirname(paths[0])), TrainPlan(224), read_encoded)
    loader = torch.utils.data.DataLoader(SeededSamples(folder, seed=0), batch_size=8, num_workers=2, pin_memory=True,
                                         collate_fn=gpu.collate)
    host: HostBatch = next(iter(loader))
    encoded = host.images
    pinned = all(t.is_pinned() for t in (encoded.data, host.targets, encoded.ready) if t is not None)
    on_device = gpu.Stage(device, channels_last=True)(host)
    on_cpu = gpu.Stage(torch.device("cpu"), channels_last=False)(host)
    diff = (pixel_levels(on_device.images).cpu() - pixel_levels(on_cpu.images)).abs()
    same_targets = torch.equal(on_device.targets.cpu(), on_cpu.targets)
    yield {"check": "loader (2 workers, pin_memory) -> CUDA stage vs CPU stage", "mean_abs_diff": diff.mean().item(),
           "max_abs_diff": diff.max().item(), "pinned": pinned,
           "ok": pinned and same_targets and on_device.images.is_contiguous(memory_format=torch.channels_last)
           and diff.mean().item() < 2.0}


def check_stage_ahead(device, paths):
    """The training loop's stage (make_stage: one batch ahead on a side stream) against the same host
    batches through the plain call, with a long main-stream kernel queued after each hand-over, so a missing
    wait or a freed-too-early buffer shows as different pixels."""
    folder = ImageFolder(os.path.dirname(os.path.dirname(paths[0])), TrainPlan(224), read_encoded)
    loader = torch.utils.data.DataLoader(SeededSamples(folder, seed=0), batch_size=4, num_workers=2, pin_memory=True,
                                         collate_fn=gpu.collate)
    hosts = list(loader)
    stage = make_stage("gpu", device, channels_last=True)
    plain = [stage(host).images.clone() for host in hosts]
    busy = torch.randn(4096, 4096, device=device)
    ahead = []
    for batch in stage.stream(hosts):
        busy = busy @ busy / 64  # keeps the main stream busy while the next batch is prepared
        ahead.append((batch.images * 1).clone())
    same = len(ahead) == len(plain) and all(torch.equal(a, b) for a, b in zip(ahead, plain))
    yield {"check": "stage one batch ahead (side stream) vs plain stage", "batches": float(len(ahead)), "ok": same}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="gpu_checks.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: these checks are for a GPU machine (the CPU paths are in the test suite)")
        return 2
    device = torch.device("cuda")
    report = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "checks": []}
    paths = jpeg_files(16)
    checks = (check_fused_eca(device), check_geometry(device, paths), check_decoders(device, paths),
              check_loader_to_stage(device, paths), check_stage_ahead(device, paths))
    for check in checks:
        for row in rows_or_error(check):
            report["checks"].append(row)
            write_json(args.json, report)
            details = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float))
            note = f" ({row['note']})" if row.get("note") else ""
            print(f"{'PASS' if row['ok'] else 'FAIL'}  {row['check']}: {details}{note}", flush=True)
    return 0 if all(row["ok"] for row in report["checks"]) else 1


def rows_or_error(check):
    """The rows of one check; an exception becomes a failed row, and the other checks still run."""
    try:
        yield from check
    except Exception as exc:  # a first run on new hardware: report every check's outcome, not the first crash
        reason = " ".join(str(exc).split())[:300]
        yield {"check": check.__name__, "ok": False, "note": f"{type(exc).__name__}: {reason}"}


if __name__ == "__main__":
    raise SystemExit(main())


# ------------------------------------------------------------------------------------------- as pytest tests

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason="no CUDA device: these checks are for a GPU machine (the CPU paths are "
                                          "covered by the rest of the suite)")


@pytest.fixture(scope="module")
def cuda():
    return torch.device("cuda")


@pytest.fixture(scope="module")
def jpeg_paths(tmp_path_factory):
    return jpeg_files(16, str(tmp_path_factory.mktemp("jpegs")))


def assert_rows_pass(rows):
    assert rows, "the check produced no rows"
    failed = [row for row in rows if not row["ok"]]
    assert not failed, "; ".join(f"{row['check']}: " + ", ".join(f"{k} {v}" for k, v in row.items()
                                                                    if k not in ("check", "ok")) for row in failed)


@requires_cuda
def test_fused_eca_block_equals_the_reference_eager_and_compiled(cuda):
    rows = list(check_fused_eca(cuda))
    assert len(rows) == 4  # eager and compiled, fp32 and bf16
    assert_rows_pass(rows)


@requires_cuda
def test_float_geometry_on_cuda_equals_the_cpu(cuda, jpeg_paths):
    assert_rows_pass(list(check_geometry(cuda, jpeg_paths)))


@requires_cuda
def test_device_decoders_equal_cpu_decoding(cuda, jpeg_paths):
    assert_rows_pass(list(check_decoders(cuda, jpeg_paths)))


@requires_cuda
def test_pinned_loader_batches_into_the_cuda_stage(cuda, jpeg_paths):
    assert_rows_pass(list(check_loader_to_stage(cuda, jpeg_paths)))


@requires_cuda
def test_the_stage_one_batch_ahead_equals_the_plain_stage(cuda, jpeg_paths):
    assert_rows_pass(list(check_stage_ahead(cuda, jpeg_paths)))


# The helpers' own logic runs anywhere.

def test_tf32_is_off_inside_the_checks_and_restored_after():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with pytest.raises(ZeroDivisionError):
            with tf32_disabled():
                assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
                1 / 0  # the switches come back after a failing check too
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_failing_check_becomes_a_failed_row():
    def check():
        yield {"check": "first", "ok": True}
        raise RuntimeError("no such decoder")

    rows = list(rows_or_error(check()))
    assert rows[0] == {"check": "first", "ok": True}
    assert rows[1]["ok"] is False and "RuntimeError: no such decoder" in rows[1]["note"]


def test_a_failed_row_fails_the_test_naming_its_numbers():
    with pytest.raises(AssertionError, match="decode vs CPU: mean_abs_diff 3.5"):
        assert_rows_pass([{"check": "ok one", "ok": True}, {"check": "decode vs CPU", "mean_abs_diff": 3.5, "ok": False}])
    with pytest.raises(AssertionError, match="no rows"):
        assert_rows_pass([])


def test_the_script_form_says_it_needs_a_gpu(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the checks")
    assert main(["--json", str(tmp_path / "gpu_checks.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().out
