"""Export a model or checkpoint to ONNX or TorchScript, verified against PyTorch before the file is written.

    python scripts/export.py eca_resnet50_k3557.pth.tar --format onnx --dynamic-batch eca_resnet50.onnx
    python scripts/export.py runs/eca_resnet18/model_best.pth.tar --format torchscript --input-size 56 \\
        --images /data/demo/val eca_resnet18.pt
    python scripts/export.py eca_mobilenet_v2 --format onnx m.onnx   # a model name: random weights (seed 0)

The architecture, ECA kernel sizes and class count are read from the checkpoint's tensors, as `-e` reads
them (-a overrides). The exported file is run (onnxruntime CPU; TorchScript in a fresh process) on images
through the evaluation transform, at batch 1 and 8 with --dynamic-batch (else the exported batch), and must
give the eager logits: max |diff| <= 1e-4 * max(1, max |logit|). For ONNX the onnxruntime / eager speed on
the same batch is printed too. ONNX needs `pip install -r requirements-export.txt`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.config.parser import OneLineParser  # noqa: E402
from utils.deploy import export  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.running.entry import run_cli  # noqa: E402
from utils.running.files import check_output_file  # noqa: E402


def _say(line: str) -> None:
    print(f"=> {line}", flush=True)


def main(argv=None) -> int:
    p = OneLineParser(prog="export.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint (.pth.tar, .safetensors), or a registered model "
                                                     "name for random initial weights")
    p.add_argument("out", metavar="OUT", help="the file to write")
    p.add_argument("--format", required=True, choices=export.FORMATS)
    p.add_argument("--opset", type=int, default=export.DEFAULT_OPSET,
                   help=f"ONNX opset (default: {export.DEFAULT_OPSET}, the exporter's lowest)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (verified at 1 and 8)")
    p.add_argument("-b", "--batch-size", type=int, default=1, help="the exported (and verified) batch without "
                                                                   "--dynamic-batch (default: 1)")
    p.add_argument("-a", "--arch", default=None, help="architecture (default: read from the checkpoint's tensors)")
    p.add_argument("--num-classes", type=int, default=None, help="class count of a model name (default: 1000)")
    p.add_argument("--input-size", type=int, default=224, help="square input side in pixels (default: 224)")
    p.add_argument("--val-resize", type=int, default=None, help="short side before the center crop of the check "
                                                                "images (default: input size * 256/224)")
    p.add_argument("--images", metavar="DIR", default=None, help="check on the JPEG/PNG images of DIR (sorted, "
                                                                 "recursive) instead of generated ones")
    p.add_argument("--repeats", type=int, default=5, help="timed runs for the speed line (default: 5)")
    args = p.parse_args(argv)
    # Everything the user gave is checked before the (slow) export.
    if args.format == "onnx":
        export.require(export.ONNX_PACKAGES, "--format onnx")
        if args.opset < export.DEFAULT_OPSET:
            raise UserError(f"--opset {args.opset}: torch's ONNX exporter writes opset {export.DEFAULT_OPSET} or later")
    for flag, value, least in (("--input-size", args.input_size, 32), ("--batch-size", args.batch_size, 1),
                               ("--repeats", args.repeats, 1), ("--val-resize", args.val_resize or args.input_size,
                                                                 args.input_size)):
        if value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    if args.num_classes is not None and args.num_classes <= 0:
        raise UserError(f"--num-classes must be positive, got {args.num_classes}")
    check_output_file(args.out, "OUT")
    export.check_images(args.images)
    loaded = export.load_model(args.checkpoint, args.arch, args.num_classes)
    kernels = getattr(loaded.model, "k_size", None)
    _say(f"exporting {loaded.arch}" + (f" (ECA kernels {kernels})" if kernels else "") +
         f" with {loaded.origin}, as {args.format}, input {'N' if args.dynamic_batch else args.batch_size}x3x"
         f"{args.input_size}x{args.input_size}, ECA in its reference (conv) form")
    settings = export.ExportSettings(args.format, args.input_size, args.val_resize, args.images, args.opset,
                                     args.dynamic_batch, args.batch_size, args.repeats)
    report = export.export_model(loaded.model, args.out, settings, _say)
    _say(f"wrote {args.out} ({report.size_bytes / 1e6:.1f} MB), verified")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="export.py"))
