"""Params and FLOPs of any registered model, in the official ECA-Net format.

    python paras_flops.py -a eca_resnet50 [--ksize 3557] [--input-size 224]
    python paras_flops.py --all
    python paras_flops.py -a eca_resnet50 --layers      # every ECA layer's k under each convention

FLOPs are thop multiply-accumulates divided by 1024^3 (G) or 1024^2 (M); params by 1024^2 (M),
exactly as the official tables count them. Exact decimal counts are printed too.
"""
import sys
from typing import Optional

from models import list_models, model_family
from models.ksize import format_ksize
from utils.analysis.flops import count_params_macs, format_1024
from utils.analysis.kernel_sizes import kernel_table
from utils.config.declare import Section, option, section
from utils.config.parser import build_parser, declared_defaults, parse_options
from utils.config.sections import MAX_IMAGE_SIDE, ModelSettings
from utils.running.entry import run_cli


def input_side(value) -> Optional[str]:
    if value < 32:
        return "is too small: the models downsample 32x; use >= 32"
    if value > MAX_IMAGE_SIDE:
        return f"is larger than {MAX_IMAGE_SIDE}: the paper's numbers are at 224"
    return None


@section
class CountSettings(Section):
    """How models are counted (shared with scripts/table3_params_flops.py)."""
    GROUP = "counting"
    input_size: int = option("--input-size", type=int, default=224, check=input_side,
                             help="square input side in pixels")


@section
class ReportSettings(Section):
    GROUP = "counting"
    all: bool = option("--all", action="store_true", default=False, help="one table for every registered model")
    layers: bool = option("--layers", action="store_true", default=False,
                          help="also list every ECA layer with its channels and its kernel size under each "
                               "convention (released, the paper's formula, timm's) and the --ksize that builds it")


DEFAULTS = {"arch": "eca_resnet50", "num_classes": 1000}


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


def main(argv=None) -> int:
    sections = (ModelSettings, CountSettings, ReportSettings)
    defaults = {**declared_defaults(sections), **DEFAULTS}
    values, _ = parse_options(build_parser(sections, defaults, __doc__), argv, defaults)
    model, count, report = (cls.from_values(values) for cls in sections)  # checked here
    if report.all:
        print_table(count.input_size, model.num_classes)
        return 0
    k_size = model_family(model.arch).parse_ksize(model.ksize, model.arch)
    line = describe(model.arch, k_size, count.input_size, model.num_classes)
    if isinstance(k_size, list):
        line += f"  k_size {format_ksize(k_size)}"
    print(line)
    print("Note: FLOPs are multiply-accumulates counted by thop; units are powers of 1024, as in the paper.")
    if report.layers:
        print(f"\nECA kernel sizes of {model.arch} per convention (utils/analysis/kernel_sizes.py):")
        print(kernel_table(model.arch))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
