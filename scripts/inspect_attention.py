"""Print (and optionally plot) what a checkpoint's attention learned.

    python scripts/inspect_attention.py runs/eca_resnet18/model_best.pth.tar
    python scripts/inspect_attention.py CKPT --data /data/ILSVRC2012 --images 64 --png attention.png

Prints each ECA layer's 1-D kernel; with --data, also statistics of the channel gates over the first
--images validation images; with --png, draws the kernels (and gate histograms) as a picture.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import CheckpointError, WeightsFile, create_model, load_strict  # noqa: E402
from utils.attention_insight import channel_gates, eca_kernels  # noqa: E402
from utils.errors import UserError  # noqa: E402


def load_model(path: str, arch=None):
    weights = WeightsFile.read(path)
    arch = arch or weights.arch
    if arch is None:
        raise CheckpointError(f"{path}: its tensors match no registered model; pass -a")
    model = create_model(arch, k_size=weights.kernels(arch), num_classes=weights.num_classes)
    return arch, load_strict(model, weights.state_dict, path).eval()


def val_images(data: str, count: int, crop: int, resize: int) -> torch.Tensor:

    from utils.data import pil
    from utils.data.common import ImageFolder

    dataset = ImageFolder(os.path.join(data, "val"), pil.eval_transform(crop, resize), pil.load)
    step = max(1, len(dataset) // count)  # spread over the classes (ImageFolder is sorted by class)
    return torch.stack([dataset[i][0] for i in range(0, len(dataset), step)[:count]])


def draw_png(path: str, kernels, gates) -> None:
    """One row per layer: kernel taps as bars (left), gate histogram (right). PIL only."""
    from PIL import Image, ImageDraw

    rows, row_h, width = list(kernels), 46, 720
    image = Image.new("RGB", (width, 24 + row_h * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), "ECA kernel taps (blue: +, red: -)      channel-gate histogram, 0..1", fill="black")
    scale = max((abs(v) for taps in kernels.values() for v in taps), default=1.0) or 1.0
    for r, name in enumerate(rows):
        top = 24 + r * row_h
        mid = top + row_h // 2
        draw.text((6, mid - 6), name, fill="black")
        for i, value in enumerate(kernels[name]):
            x = 200 + i * 22
            h = value / scale * (row_h / 2 - 4)
            draw.rectangle([x, min(mid, mid - h), x + 16, max(mid, mid - h)], fill="#3060c0" if value >= 0 else "#c03030")
        if name in gates:
            counts = torch.histc(gates[name], bins=40, min=0.0, max=1.0)
            peak = counts.max().item() or 1.0
            for b, c in enumerate(counts.tolist()):
                x = 420 + b * 7
                draw.rectangle([x, top + row_h - 4 - c / peak * (row_h - 8), x + 5, top + row_h - 4], fill="#509050")
    image.save(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("-a", "--arch", default=None, help="architecture (default: read from the tensors)")
    p.add_argument("--data", default=None, help="dataset root: gate statistics on DATA/val")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--val-resize", type=int, default=256)
    p.add_argument("--png", default=None, help="also draw the kernels and gate histograms into this PNG")
    args = p.parse_args(argv)
    try:
        arch, model = load_model(args.checkpoint, args.arch)
    except UserError as exc:
        print(f"inspect_attention.py: error: {exc}", file=sys.stderr)
        return 2
    kernels = eca_kernels(model)
    print(f"{arch}: {len(kernels)} ECA layers")
    for name, taps in kernels.items():
        print(f"  {name:<24} k={len(taps)}  " + " ".join(f"{v:+.3f}" for v in taps))
    gates = {}
    if args.data:
        gates = channel_gates(model, val_images(args.data, args.images, args.crop_size, args.val_resize))
        print("channel gates on validation images: mean / std / min / max")
        for name, g in gates.items():
            print(f"  {name:<24} {g.mean():.3f} / {g.std():.3f} / {g.min():.3f} / {g.max():.3f}")
    if args.png:
        draw_png(args.png, kernels, gates)
        print(f"=> wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
