"""Time the part of a residual block that ECA changes: BN -> (ECA) -> + identity -> ReLU, on a
conv output of a given shape, for each ECA implementation against the same block end without ECA.

    python scripts/benchmarks/block_end.py                      # GPU if present: bf16 autocast, compiled and eager
    python scripts/benchmarks/block_end.py --cpu --batch 8      # CPU: fp32 unless --amp bf16

Convolutions dominate a whole network's time and the noise of its measurement; this isolates the
memory-bound tail where ECA's cost lives, so each implementation's step can be seen. Forward and
backward in training mode (batch statistics, running-statistic updates), and forward in eval mode.
Medians of --repeats windows, synchronised; ratios are against the plain block end in the same run.

It computes as training does: the block keeps fp32 parameters and runs under the run's autocast, and
its inputs have the dtype its last convolution produces under that autocast (bf16 on a GPU), so the ECA
convolution sees what it sees in a training step.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models.attention import set_eca_implementation  # noqa: E402
from models.resnet import Bottleneck  # noqa: E402
from scripts.benchmarks.benchmark import numerics_for, timed_rate  # noqa: E402
from utils.training.numerics import AMP_DTYPES, Numerics  # noqa: E402

VARIANTS = (("plain", None, "conv"), ("eca conv", "eca", "conv"), ("eca shifted", "eca", "shifted"),
            ("eca fused", "eca", "fused"))


def median_ms(fn, device, calls: int, warmup: int, repeats: int) -> float:
    """Median milliseconds per call, from the whole-model benchmark's synchronised timing windows."""
    return 1e3 / timed_rate(fn, 1, device, calls, warmup, repeats)


def measure(attention, impl, compiled: bool, args, device, amp: str) -> dict:
    """Train (forward + backward) and eval milliseconds of one block end variant under autocast `amp`
    ("none", "bf16" or "fp16"), and the dtype it computed its output in."""
    torch.manual_seed(0)
    numerics = Numerics(numerics_for(device, amp, True, compiled))
    planes = args.channels // Bottleneck.expansion
    block = Bottleneck(args.channels, planes, attention=attention, k_size=args.k).to(device)
    if attention:
        set_eca_implementation(block, impl)
    block = block.to(memory_format=torch.channels_last)
    tail = torch.compile(block._finish) if compiled else block._finish
    with torch.no_grad(), numerics.autocast():  # the dtype of the activations the block end receives
        dtype = block.conv3(torch.zeros(1, planes, 1, 1, device=device)).dtype
    shape = (args.batch, args.channels, args.size, args.size)
    make = lambda: torch.randn(shape, device=device).to(dtype=dtype,  # noqa: E731
                                                         memory_format=torch.channels_last).requires_grad_(True)
    x, identity = make(), make()

    def forward():
        with numerics.autocast():
            return tail(x, block.bn3, identity)

    block.train()
    out = forward()  # also the first (compiling) call of the training graph
    grad = torch.randn_like(out)

    def train_call():
        x.grad = identity.grad = None  # no accumulation pass into old gradients
        forward().backward(grad)

    @torch.no_grad()
    def eval_call():
        forward()

    train = median_ms(train_call, device, args.calls, args.warmup, args.repeats)
    block.eval()
    evaluation = median_ms(eval_call, device, args.calls, args.warmup, args.repeats)
    return {"train_ms": train, "eval_ms": evaluation, "out_dtype": str(out.dtype).replace("torch.", "")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--channels", type=int, default=256, help="block output channels (256: ResNet-50 stage 1)")
    p.add_argument("--size", type=int, default=56, help="spatial size (56: ResNet-50 stage 1 at 224 px)")
    p.add_argument("--k", type=int, default=3, help="ECA kernel size")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--amp", choices=["auto"] + sorted(AMP_DTYPES), default="auto",
                   help="autocast, as in training (default: bf16 on a GPU, none on the CPU, where bf16 is slow)")
    p.add_argument("--fp32", action="store_true", help="the same as --amp none")
    p.add_argument("--modes", default="eager,compiled")
    p.add_argument("--variants", default=",".join(label for label, _, _ in VARIANTS),
                   help="comma-separated, from: " + ", ".join(label for label, _, _ in VARIANTS) + " (plain first)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    amp = "none" if args.fp32 else args.amp if args.amp != "auto" else "bf16" if device.type == "cuda" else "none"
    variants = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    if not variants or variants[0][0] != "plain":
        p.error("--variants must include plain: the ratios are against it")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {name}, torch {torch.__version__}, block end on ({args.batch}, {args.channels}, {args.size}, "
          f"{args.size}), autocast {amp}, k={args.k}; ms per call (ratio to plain)")
    print("| mode | variant | train fwd+bwd ms | eval fwd ms |\n|---|---|---|---|")
    for mode in args.modes.split(","):
        plain = None
        for label, attention, impl in variants:
            # fused is measured eager too: it shows why --eca-impl auto picks it only under the compiler.
            r = measure(attention, impl, mode == "compiled", args, device, amp)
            plain = plain or r
            print(f"| {mode} | {label} | {r['train_ms']:.3f} ({r['train_ms'] / plain['train_ms']:.2f}x) | "
                  f"{r['eval_ms']:.3f} ({r['eval_ms'] / plain['eval_ms']:.2f}x) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
