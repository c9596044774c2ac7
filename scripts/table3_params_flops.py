"""Reproduce the Param and FLOPs columns of the paper's Table 3 (ResNet, SE, CBAM, ECA backbones) and
list the models of its Table 1 (channel attention variants on ResNet-50) with the same counts.

    python scripts/table3_params_flops.py [--table {1,3,all}] [--input-size 224]

Counts are thop multiply-accumulates and parameters in the official 1024-based units. Table 1's top-1
accuracies are the paper's; nothing here measures them (scripts/recipes/ trains each row).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import list_models  # noqa: E402
from paras_flops import CountSettings  # noqa: E402
from utils.analysis.flops import count_params_macs, format_1024  # noqa: E402
from utils.config.parser import build_parser, declared_defaults, parse_options  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402

BACKBONES = (("ResNet-50", "resnet50"), ("ResNet-101", "resnet101"), ("ResNet-152", "resnet152"),
             ("MobileNetV2", "mobilenet_v2"))
METHODS = (("ResNet", ""), ("SENet", "se_"), ("CBAM", "cbam_"), ("ECA-Net", "eca_"))

# Paper Table 1: (method, arch, --ksize). Every attention layer sits where ECA does in ResNet-50; the table
# compares the modules at k = 3 for ECA and ECA-NS (not the released 3557), SE at r = 16. The first row is
# the backbone the "added" columns are measured against.
TABLE1_ROWS = (
    ("Vanilla", "resnet50", None), ("SE (r=16)", "se_resnet50", None), ("SE-Var1", "se_var1_resnet50", None),
    ("SE-Var2", "se_var2_resnet50", None), ("SE-Var3", "se_var3_resnet50", None),
    ("ECA-NS (k=3)", "eca_ns_resnet50", 3), ("ECA (k=3)", "eca_resnet50", 3),
)


def print_table3(input_size: int) -> None:
    print("| backbone | method | Param | FLOPs |")
    print("|---|---|---|---|")
    for label, base in BACKBONES:
        for method, prefix in METHODS:
            name = prefix + base
            if name not in list_models():
                print(f"| {label} | {method} | – | – |")  # the paper has no such model either
                continue
            counts = count_params_macs(name, input_size=input_size)
            print(f"| {label} | {method} | {format_1024(counts['params'])} | {format_1024(counts['macs'])} |")


def print_table1(input_size: int) -> None:
    """One row per Table 1 model: the official-format totals, and the exact parameters and MACs the attention
    layers add to the plain ResNet-50 (params: the paper's #Param column summed over the 16 blocks; MACs:
    what thop counts, so the global average pools too, but not elementwise products such as SE-Var2's)."""
    print("| method | arch | --ksize | Param | FLOPs | params added | MACs added |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for method, arch, k_size in TABLE1_ROWS:
        counts = count_params_macs(arch, k_size, input_size)
        if base is None:
            base = counts
        added_params, added_macs = counts["params"] - base["params"], counts["macs"] - base["macs"]
        print(f"| {method} | {arch} | {k_size or '–'} | {format_1024(counts['params'])} | "
              f"{format_1024(counts['macs'])} | {added_params:,} | {added_macs:,} |")


def main(argv=None) -> int:
    sections = (CountSettings,)
    defaults = declared_defaults(sections)
    parser = build_parser(sections, defaults, __doc__)
    parser.add_argument("--table", choices=("1", "3", "all"), default="all",
                        help="which paper table to list (default: both, Table 3 first)")
    values, _ = parse_options(parser, argv, defaults)  # untyped options are UNSET until the defaults fill them
    args = argparse.Namespace(**values)
    CountSettings.from_values(values)  # the same check as paras_flops.py
    if args.table in ("3", "all"):
        print_table3(args.input_size)
    if args.table == "all":
        print()
    if args.table in ("1", "all"):
        print(f"Paper Table 1 models (ResNet-50), input {args.input_size}x{args.input_size}; "
              "added = over resnet50, exact counts:")
        print_table1(args.input_size)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
