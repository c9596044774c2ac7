"""Print (and optionally plot) what a checkpoint's attention learned.

    python scripts/inspect_attention.py runs/eca_resnet18/model_best.pth.tar
    python scripts/inspect_attention.py CKPT --data /data/ILSVRC2012 --images 64 --png attention.png

Prints each ECA layer's 1-D kernel; with --data, also statistics of the channel gates over the first
--images validation images; with --png, draws the kernels (and gate histograms) as a picture (needs
matplotlib: pip install -r requirements-plot.txt).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import CheckpointError, WeightsFile, create_model, load_strict  # noqa: E402
from utils.analysis.attention_insight import channel_gates, eca_kernels  # noqa: E402
from utils.analysis.plots import plot_attention  # noqa: E402
from utils.config.parser import OneLineParser  # noqa: E402
from utils.data.dataset_checks import check_split  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import check_output_file  # noqa: E402


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


def main(argv=None) -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("-a", "--arch", default=None, help="architecture (default: read from the tensors)")
    p.add_argument("--data", default=None, help="dataset root: gate statistics on DATA/val")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--val-resize", type=int, default=256)
    p.add_argument("--png", default=None, help="also draw the kernels and gate histograms into this PNG")
    args = p.parse_args(argv)
    # Every input and output is checked before the work: a bad --png must not fail after it.
    if args.png:
        check_output_file(args.png, "--png")
    if args.data:
        check_split(args.data, "val")
    if args.images <= 0:
        raise UserError(f"--images must be a positive integer, got {args.images}")
    arch, model = load_model(args.checkpoint, args.arch)
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
        plot_attention(kernels, gates, arch, args.png)
        print(f"=> wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
