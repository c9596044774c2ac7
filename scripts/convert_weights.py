"""Convert a checkpoint to .safetensors (weights and metadata, no pickle), or a .safetensors file back to
the official .pth.tar dict.

    python scripts/convert_weights.py eca_resnet50_k3557.pth.tar eca_resnet50_k3557.safetensors
    python scripts/convert_weights.py runs/eca_resnet18/model_best.pth.tar eca_resnet18.safetensors
    python scripts/convert_weights.py eca_resnet50_k3557.safetensors eca_resnet50_k3557.pth.tar

IN: an official checkpoint, one of this project's, a bare state_dict, or a .safetensors file (by extension
or content). The direction follows IN: a .safetensors file becomes the official dict (`epoch`, `arch`,
`state_dict` with `module.` keys, `best_prec1`, `optimizer`), anything else a .safetensors file with the
metadata arch, k_size, num_classes, format_version (and epoch, best_prec1, class names when IN has them).
Every file the project reads weights from takes .safetensors directly (-e --resume, --pretrained, hub,
scripts/export.py). Needs `pip install -r requirements-export.txt` (the safetensors package).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.config.parser import OneLineParser  # noqa: E402
from utils.deploy import safetensors_io  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import check_output_file  # noqa: E402


def main(argv=None) -> int:
    p = OneLineParser(prog="convert_weights.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="IN", help="checkpoint (.pth.tar, .pth) or .safetensors file")
    p.add_argument("out", metavar="OUT", help=".safetensors file to write, or the .pth.tar to write from one")
    p.add_argument("-a", "--arch", default=None, help="architecture (default: read from the tensors)")
    args = p.parse_args(argv)
    check_output_file(args.out, "OUT")
    if os.path.abspath(args.out) == os.path.abspath(args.source):
        raise safetensors_io.UserError("OUT is IN: write the converted file under another name")
    direction = safetensors_io.convert(args.source, args.out, args.arch)
    what = "the official .pth.tar dict" if direction == "official" else ".safetensors (weights and metadata)"
    print(f"=> wrote {args.out}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="convert_weights.py"))
