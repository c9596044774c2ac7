"""Reproduce the Param and FLOPs columns of the paper's Table 3 (ResNet, SE, CBAM, ECA backbones).

    python scripts/table3_params_flops.py [--input-size 224]

Counts are thop multiply-accumulates and parameters in the official 1024-based units.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import list_models  # noqa: E402
from utils.flops import count_params_macs, format_1024  # noqa: E402

BACKBONES = (("ResNet-50", "resnet50"), ("ResNet-101", "resnet101"), ("ResNet-152", "resnet152"),
             ("MobileNetV2", "mobilenet_v2"))
METHODS = (("ResNet", ""), ("SENet", "se_"), ("CBAM", "cbam_"), ("ECA-Net", "eca_"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args(argv)
    print("| backbone | method | Param | FLOPs |")
    print("|---|---|---|---|")
    for label, base in BACKBONES:
        for method, prefix in METHODS:
            name = prefix + base
            if name not in list_models():
                print(f"| {label} | {method} | – | – |")  # the paper has no such model either
                continue
            counts = count_params_macs(name, input_size=args.input_size)
            print(f"| {label} | {method} | {format_1024(counts['params'])} | {format_1024(counts['macs'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
