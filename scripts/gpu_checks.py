"""Correctness of the CUDA-only paths, for a session with a GPU (the CPU tests cover the rest):

1. the fused BN + ECA + residual form against the reference layers on CUDA, eager and compiled, fp32
   and bf16 autocast: outputs, input and parameter gradients, running statistics;
2. the gpu input pipeline's device decoders (torchvision nvJPEG, and nvImageCodec when installed)
   against the same pipeline decoding on the CPU, on generated photo-like JPEGs.

    python scripts/gpu_checks.py --json gpu_checks.json

Prints one line per check with the measured relative error or pixel difference and PASS/FAIL, and exits
non-zero if any check fails.
"""
import argparse
import copy
import json
import os
import sys
import tempfile

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.attention import set_eca_implementation  # noqa: E402
from models.resnet import Bottleneck  # noqa: E402
from scripts.make_jpeg_folder import make_image  # noqa: E402
from utils.data.gpu import DeviceJpegDecoder, EncodedBatch, EvalPlan, TrainPlan  # noqa: E402
from utils.data.gpu import load as read_encoded  # noqa: E402
from utils.data.gpu import nvimgcodec_available  # noqa: E402


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


def check_fused_eca(device) -> list:
    rows = []
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
            rows.append({"check": f"fused ECA block, {'compiled' if compiled else 'eager'}, "
                                  f"{'bf16' if dtype else 'fp32'}",
                         "max_rel_error_fused": max(e for e, _ in errors),
                         "max_rel_error_reference": max(e for _, e in errors), "ok": ok and buffers_ok})
    return rows


def check_decoders(device) -> list:
    rows = []
    folder = tempfile.mkdtemp()
    paths = [os.path.join(folder, f"{i}.jpg") for i in range(16)]
    for seed, path in enumerate(paths):
        make_image(path, seed)  # ImageNet-sized, several aspect ratios
    backends = ["torchvision"] + (["nvimgcodec"] if nvimgcodec_available() else [])
    for plan_name, plan in (("train", TrainPlan(224)), ("eval", EvalPlan(224, 256))):
        torch.manual_seed(0)
        samples = [plan(read_encoded(p)) for p in paths]
        expected = DeviceJpegDecoder(torch.device("cpu"))(EncodedBatch(copy.copy(samples))).int()
        for backend in backends:
            got = DeviceJpegDecoder(device, prefer=backend)(EncodedBatch(copy.copy(samples))).cpu().int()
            diff = (got - expected).abs().float()
            # Different IDCT and chroma upsampling: a few levels here and there, nothing systematic.
            ok = got.shape == expected.shape and diff.mean().item() < 2.0
            rows.append({"check": f"{backend} decode ({plan_name} crops) vs CPU", "mean_abs_diff": diff.mean().item(),
                         "max_abs_diff": diff.max().item(), "ok": ok})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="gpu_checks.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: these checks are for a GPU machine (the CPU paths are in the test suite)")
        return 2
    device = torch.device("cuda")
    rows = check_fused_eca(device) + check_decoders(device)
    for row in rows:
        details = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float))
        print(f"{'PASS' if row['ok'] else 'FAIL'}  {row['check']}: {details}")
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "checks": rows}, f,
                  indent=2)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
