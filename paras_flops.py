"""Params and FLOPs of any registered model, in the official ECA-Net format.

    python paras_flops.py -a eca_resnet50 [--ksize 3557] [--input-size 224]
    python paras_flops.py --all

FLOPs are thop multiply-accumulates divided by 1024^3 (G) or 1024^2 (M); params by 1024^2 (M),
exactly as the official tables count them. Exact decimal counts are printed too.
"""
import argparse
import sys

from models import list_models, unknown_model_message
from models.ksize import format_ksize
from utils.arg_checks import MAX_IMAGE_SIDE, parse_arch_ksize
from utils.cli import OneLineParser
from utils.errors import UserError
from utils.flops import count_params_macs, format_1024


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-a", "--arch", default="eca_resnet50", metavar="ARCH",
                        help="model name (default: eca_resnet50); see --all for the list")
    parser.add_argument("--ksize", default=None,
                        help="ECA kernel sizes: '3557', '3,5,5,7', one odd int, or 'adaptive' (default: released)")
    parser.add_argument("--input-size", type=int, default=224, help="square input side in pixels (default: 224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default: 1000)")
    parser.add_argument("--all", action="store_true", help="one table for every registered model")
    return parser


def describe(arch: str, k_size, input_size: int, num_classes: int) -> str:
    counts = count_params_macs(arch, k_size, input_size, num_classes)
    return (f"{arch}: Params {format_1024(counts['params'])}  FLOPs {format_1024(counts['macs'])}  "
            f"(exact: {counts['params']:,} params, {counts['macs']:,} MACs)")


def print_table(input_size: int, num_classes: int) -> None:
    print(f"Input {input_size}x{input_size}; FLOPs are thop multiply-accumulates; M and G are powers of 1024.\n")
    print("| arch | Params | FLOPs | params (exact) | MACs (exact) |")
    print("|---|---|---|---|---|")
    for arch in list_models():
        c = count_params_macs(arch, None, input_size, num_classes)
        print(f"| {arch} | {format_1024(c['params'])} | {format_1024(c['macs'])} | {c['params']:,} | {c['macs']:,} |")


def check(args) -> None:
    """Every bad value is a one-line error (exit 2) before any model is built."""
    if args.input_size < 32:
        raise UserError(f"--input-size {args.input_size} is too small: the models downsample 32x; use >= 32")
    if args.input_size > MAX_IMAGE_SIDE:
        raise UserError(f"--input-size {args.input_size} is larger than {MAX_IMAGE_SIDE}: the paper's numbers are at 224")
    if args.num_classes <= 0:
        raise UserError(f"--num-classes must be positive, got {args.num_classes}")
    if not args.all and args.arch not in list_models():
        raise UserError(unknown_model_message(args.arch))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check(args)
        if args.all:
            print_table(args.input_size, args.num_classes)
            return 0
        k_size = parse_arch_ksize(args.arch, args.ksize)
        line = describe(args.arch, k_size, args.input_size, args.num_classes)
    except UserError as exc:
        print(f"paras_flops.py: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(k_size, list):
        line += f"  k_size {format_ksize(k_size)}"
    print(line)
    print("Note: FLOPs are multiply-accumulates counted by thop; units are powers of 1024, as in the paper.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
