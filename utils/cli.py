"""The command line shared by main.py and light_main.py; they differ only in recipe defaults.

Every flag of the official CLI keeps its meaning; the official defects are fixed (--ksize takes any
form, --seed works, --pretrained loads the given file, -a only accepts registered models). Parsing only:
utils/resolve.py checks and settles the values.
"""
import argparse
from typing import Dict, Optional, Sequence

from models import list_models
from models.attention import ECA_IMPLEMENTATIONS

# Options whose defaults change with the recipe; the parser holds neutral values until a recipe is applied.
AMP_CHOICES = ("auto", "none", "bf16", "fp16")
SCHEDULES = ("step", "exp", "cosine")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the entry point's usage examples as written."""


def build_parser(recipe: Dict, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    p.add_argument("data", nargs="?", default=None, metavar="DIR",
                   help="dataset folder with train/ and val/ (one sub-folder per class); "
                        "omit it to use the built-in demo dataset")
    official = p.add_argument_group("official flags")
    official.add_argument("-a", "--arch", metavar="ARCH", help=f"model: {', '.join(list_models())}")
    official.add_argument("--ksize", default=None, help="ECA kernel sizes: '3557', '3,5,5,7', one odd int, or "
                          "'adaptive' (default: the released sizes, or those in the checkpoint)")
    official.add_argument("-j", "--workers", type=int, default=None,
                          help="data-loading processes per training process (default: min(16, CPUs per process))")
    official.add_argument("--epochs", type=int, help="total epochs")
    official.add_argument("--start-epoch", type=int, default=None, help="epoch to start at (default: 0, or the "
                          "checkpoint's with --resume)")
    official.add_argument("-b", "--batch-size", type=int, help="global batch size, split over all processes")
    official.add_argument("--lr", "--learning-rate", dest="lr", type=float, help="initial learning rate for the "
                          "global batch")
    official.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    official.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, help="weight decay")
    official.add_argument("-p", "--print-freq", type=int, default=10, help="progress update every N steps")
    official.add_argument("--resume", default="", metavar="PATH", help="checkpoint to resume training from (with "
                          "-e: to evaluate)")
    official.add_argument("-e", "--evaluate", action="store_true", help="evaluate on DIR/val and exit")
    official.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="PATH",
                          help="initialise from this checkpoint's weights (e.g. a released .pth.tar)")
    official.add_argument("--seed", type=int, default=None, help="seed for weights, data order and augmentation")
    official.add_argument("--gpu", type=int, default=None, help="use only this GPU index")
    official.add_argument("--action", default="", help="suffix of the run name (runs/<arch>_<action>)")

    dist = p.add_argument_group("distributed (prefer torchrun, which sets these from its environment)")
    dist.add_argument("--world-size", type=int, default=-1, help="number of processes for a manual launch")
    dist.add_argument("--rank", type=int, default=-1, help="this process's rank for a manual launch")
    dist.add_argument("--dist-url", default="env://", help="rendezvous URL for a manual launch")
    dist.add_argument("--dist-backend", default=None, help="nccl or gloo (default: nccl on GPUs, gloo on CPU)")
    dist.add_argument("--dist-timeout", type=float, default=30.0, help="minutes before a stuck collective fails")
    dist.add_argument("--sync-bn", action="store_true", help="synchronise BatchNorm statistics across processes")

    speed = p.add_argument_group("speed and numerics")
    speed.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                       help="autocast dtype; auto = bf16 on CUDA, none on CPU")
    speed.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="NHWC memory format (default: on for CUDA)")
    speed.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the model (default: on for CUDA training)")
    speed.add_argument("--compile-backend", default="inductor",
                       help="torch.compile backend (inductor generates kernels; aot_eager only traces, for debugging)")
    speed.add_argument("--eca-impl", choices=("auto",) + ECA_IMPLEMENTATIONS, default="auto",
                       help="same weights and function, different kernels: conv (reference Conv1d gate), shifted "
                            "(gate as k shifted sums), fused (BN + ECA + residual in two memory passes, "
                            "models/fused_eca.py); auto: fused under --compile, else conv")
    speed.add_argument("--official-numerics", action="store_true",
                       help="the official recipe's numerics: fp32, NCHW, eager (overrides the three above)")
    speed.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    speed.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on GPU)")

    optim = p.add_argument_group("schedule and regularisation")
    optim.add_argument("--lr-schedule", choices=SCHEDULES, help="step: x gamma every --lr-step epochs; exp: x gamma "
                       "every epoch; cosine: to 0 at the last epoch")
    optim.add_argument("--lr-step", type=int, default=30, help="epochs between decays of the step schedule")
    optim.add_argument("--lr-gamma", type=float, help="decay factor of the step and exp schedules")
    optim.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up from 0, in epochs")
    optim.add_argument("--skip-nonfinite", type=int, default=0, metavar="N",
                       help="skip up to N steps whose loss is NaN/inf instead of stopping (syncs every step)")
    optim.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")

    data = p.add_argument_group("data")
    data.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the dataset's, or "
                      "the checkpoint's)")
    data.add_argument("--crop-size", type=int, help="training crop and evaluation center crop, in pixels")
    data.add_argument("--crop-scale", type=float, default=0.08,
                      help="smallest area fraction of RandomResizedCrop (0.08: the official augmentation)")
    data.add_argument("--val-resize", type=int, help="evaluation: resize the short side to this before the crop")
    data.add_argument("--skip-corrupt", action="store_true",
                      help="evaluation: leave unreadable images out (reported) instead of stopping")
    data.add_argument("--max-skipped", type=int, default=100,
                      help="training: stop when an epoch holds more unreadable images than this")
    data.add_argument("--data-backend", choices=("auto", "pil", "tensor", "gpu"), default="auto",
                      help="pil: PIL decode and float transforms in the workers (official); tensor: torchvision.io "
                           "decode, uint8 crops, normalised on the device; gpu: workers read JPEG bytes, the device "
                           "decodes, crops and flips (nvImageCodec if installed, else nvJPEG); auto: tensor on "
                           "CUDA, pil on CPU")
    data.add_argument("--dummy", action="store_true", help="synthetic random images (speed checks, no dataset)")

    out = p.add_argument_group("output")
    out.add_argument("--output-dir", default=None, help="run directory (default: runs/<arch>_<action>)")
    out.add_argument("--predictions", default=None, metavar="FILE", help="with -e: CSV of path, target, top-5")
    out.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                     help="write TensorBoard scalars to the run directory")
    out.add_argument("--log-attention", action="store_true",
                     help="TensorBoard: ECA kernels and channel-gate histograms on a fixed val batch, each epoch")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    p.set_defaults(**recipe)
    return p


def explicit_options(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> set:
    """Names of the options the user typed, so recipe switches never override them."""
    saved = [(action, action.default) for action in parser._actions]
    saved_defaults = dict(parser._defaults)
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults.update(saved_defaults)
