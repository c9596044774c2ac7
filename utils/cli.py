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
TORCHVISION_SCHEDULERS = {"steplr": "step", "cosineannealinglr": "cosine", "exponentiallr": "exp"}
AUTO_AUGMENT_POLICIES = ("ra", "ta_wide", "augmix", "imagenet")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the entry point's usage examples as written."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line (argparse prints the whole usage first): exit 2, as always."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _official(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None, metavar="DIR",
                   help="dataset folder with train/ and val/ (one sub-folder per class); "
                        "omit it to use the built-in demo dataset")
    official = p.add_argument_group("official flags")
    official.add_argument("-a", "--arch", "--model", metavar="ARCH", help=f"model: {', '.join(list_models())}")
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
    official.add_argument("-p", "--print-freq", type=int, default=10, help="progress line (or bar update) every N "
                          "steps; also how often metrics are read from the device")
    official.add_argument("--resume", default="", metavar="PATH", help="checkpoint to resume training from (with "
                          "-e: to evaluate); 'auto': the run folder's checkpoint if there is one, else a fresh start "
                          "(a requeued job reruns the same command)")
    official.add_argument("-e", "--evaluate", action="store_true", help="evaluate on DIR/val and exit")
    official.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="PATH",
                          help="initialise from this checkpoint's weights (e.g. a released .pth.tar)")
    official.add_argument("--seed", type=int, default=None, help="seed for weights, data order and augmentation")
    official.add_argument("--gpu", type=int, default=None, help="use only this GPU index")
    official.add_argument("--action", default="", help="suffix of the run name (runs/<arch>_<action>)")


def _distributed(p: argparse.ArgumentParser) -> None:
    dist = p.add_argument_group("distributed (prefer torchrun, which sets these from its environment)")
    dist.add_argument("--world-size", type=int, default=-1, help="number of processes for a manual launch")
    dist.add_argument("--rank", type=int, default=-1, help="this process's rank for a manual launch")
    dist.add_argument("--dist-url", default="env://", help="rendezvous URL for a manual launch")
    dist.add_argument("--dist-backend", default=None, help="nccl or gloo (default: nccl on GPUs, gloo on CPU)")
    dist.add_argument("--dist-timeout", type=float, default=30.0, help="minutes before a stuck collective fails")
    dist.add_argument("--sync-bn", action="store_true", help="synchronise BatchNorm statistics across processes")


def _speed(p: argparse.ArgumentParser) -> None:
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


def _schedule(p: argparse.ArgumentParser) -> None:
    optim = p.add_argument_group("schedule and regularisation")
    optim.add_argument("--lr-schedule", choices=SCHEDULES, help="step: x gamma every --lr-step epochs; exp: x gamma "
                       "every epoch; cosine: to 0 at the last epoch")
    optim.add_argument("--lr-scheduler", choices=tuple(TORCHVISION_SCHEDULERS), default=None,
                       help="torchvision's name for the same choice (steplr = step, cosineannealinglr = cosine, "
                            "exponentiallr = exp)")
    optim.add_argument("--lr-step", "--lr-step-size", dest="lr_step", type=int, default=30,
                       help="epochs between decays of the step schedule")
    optim.add_argument("--lr-gamma", type=float, help="decay factor of the step and exp schedules")
    optim.add_argument("--warmup-epochs", "--lr-warmup-epochs", dest="warmup_epochs", type=float, default=0.0,
                       help="linear warm-up, per step, in epochs")
    optim.add_argument("--lr-warmup-method", choices=("linear",), default="linear",
                       help="the warm-up's shape (torchvision's name; only linear)")
    optim.add_argument("--lr-warmup-decay", type=float, default=0.0,
                       help="the warm-up starts at this fraction of --lr (torchvision's default is 0.01; 0 here, as "
                            "the runs before it)")
    optim.add_argument("--skip-nonfinite", type=int, default=0, metavar="N",
                       help="skip up to N steps whose loss is NaN/inf instead of stopping (syncs every step)")
    optim.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")


def _data(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the dataset's, or "
                      "the checkpoint's)")
    data.add_argument("--crop-size", type=int, help="training crop and evaluation center crop, in pixels")
    data.add_argument("--crop-scale", type=float, default=0.08,
                      help="smallest area fraction of RandomResizedCrop (0.08: the official augmentation)")
    data.add_argument("--train-crop-size", type=int, default=None, help="training crop (default: --crop-size)")
    data.add_argument("--val-crop-size", type=int, default=None, help="evaluation center crop (default: --crop-size)")
    data.add_argument("--val-resize", "--val-resize-size", dest="val_resize", type=int,
                      help="evaluation: resize the short side to this before the crop")
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


def _output(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--output-dir", default=None, help="run directory (default: runs/<arch>_<action>)")
    out.add_argument("--predictions", default=None, metavar="FILE", help="with -e: CSV of path, target, top-5")
    out.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                     help="write TensorBoard scalars to the run directory")
    out.add_argument("--log-attention", action="store_true",
                     help="TensorBoard: ECA kernels and channel-gate histograms on a fixed val batch, each epoch")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                     help="progress bars in a terminal; without them (and whenever the output is a file) one line "
                          "every -p steps")


def _training_recipes(p: argparse.ArgumentParser) -> None:
    """The options of torchvision's and timm's training recipes, under torchvision's reference names."""
    group = p.add_argument_group("training recipe options (torchvision's reference names and meanings)")
    group.add_argument("--opt", choices=("sgd", "sgd_nesterov", "adamw"), default="sgd",
                       help="optimizer (--momentum applies to the SGD ones)")
    group.add_argument("--norm-weight-decay", type=float, default=None,
                       help="weight decay of normalisation layers' parameters (default: --wd)")
    group.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradients' total norm to this")
    group.add_argument("--auto-augment", choices=AUTO_AUGMENT_POLICIES, default=None,
                       help="ra: RandAugment, ta_wide: TrivialAugmentWide, augmix: AugMix, imagenet: AutoAugment's "
                            "ImageNet policy (pil and tensor pipelines)")
    group.add_argument("--ra-magnitude", type=int, default=9, help="RandAugment's magnitude")
    group.add_argument("--augmix-severity", type=int, default=3, help="AugMix's severity")
    group.add_argument("--random-erase", type=float, default=0.0, metavar="P",
                       help="probability of RandomErasing per training image (pil and tensor pipelines)")
    group.add_argument("--mixup-alpha", type=float, default=0.0, help="MixUp's alpha (0: off); soft targets")
    group.add_argument("--cutmix-alpha", type=float, default=0.0,
                       help="CutMix's alpha (0: off); with both, each batch gets one of the two")
    group.add_argument("--model-ema", action="store_true",
                       help="keep an exponential moving average of the weights (torch.optim.swa_utils."
                            "AveragedModel), evaluated and checkpointed beside the model; with -e: evaluate the "
                            "checkpoint's average")
    group.add_argument("--model-ema-steps", type=int, default=32, help="steps between updates of the average")
    group.add_argument("--model-ema-decay", type=float, default=0.99998,
                       help="decay per image seen at the reference batch, as torchvision adjusts it")


def build_parser(recipe: Dict, description: str) -> argparse.ArgumentParser:
    p = OneLineParser(description=description, formatter_class=_HelpFormatter)
    for add_group in (_official, _distributed, _speed, _schedule, _data, _training_recipes, _output):
        add_group(p)
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
