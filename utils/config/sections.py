"""Every option of main.py and light_main.py, declared once: each section is what one layer of the run reads
(the model, the input pipeline, the numerics, the optimizer, the schedule, the loop, the outputs, the
process group, the run itself), with each option's flags, default, help and check, and the checks that
relate the section's options. The official CLI's flags keep their names and meanings; recipe defaults
(main.py, light_main.py) override the defaults declared here.

A field appears in one section only; layers that need a value from another section receive it as an
argument (the schedule gets the optimizer's lr and the loop's epoch count).
"""
import argparse
import os
from typing import Optional, Tuple

import torch

from models import create_model, list_models, model_family, unknown_model_message
from models.attention import ECA_IMPLEMENTATIONS

from ..errors import UserError
from .declare import Section, above, all_of, at_least, between, derived, option, positive_int, section

MAX_IMAGE_SIDE = 4096  # a crop of this side already needs several GB per batch; larger is a typo
AMP_CHOICES = ("auto", "none", "bf16", "fp16")
SCHEDULES = ("step", "exp", "cosine")
TORCHVISION_SCHEDULERS = {"steplr": "step", "cosineannealinglr": "cosine", "exponentiallr": "exp"}
AUTO_AUGMENT_POLICIES = ("ra", "ta_wide", "augmix", "imagenet")
DATA_BACKENDS = ("auto", "pil", "tensor", "gpu")
OFFICIAL = "official flags"  # the --help group of the official CLI's flags, whichever section reads them


def positive(value) -> Optional[str]:
    return None if value > 0 else "must be positive"


def image_side(value) -> Optional[str]:
    if value <= 0:
        return "must be a positive integer"
    if value > MAX_IMAGE_SIDE:
        return f"is larger than {MAX_IMAGE_SIDE} pixels: ImageNet models train at 224"
    return None


def registered_model(value) -> None:
    if value not in list_models():
        raise UserError(unknown_model_message(value))


def seed_range(value) -> Optional[str]:
    return None if 0 <= value < 2 ** 32 else "must be in [0, 2**32)"


def run_name(value) -> Optional[str]:
    """--action names a folder inside runs/: no separators, no `..`."""
    if os.sep in value or (os.altsep and os.altsep in value) or value in (".", ".."):
        return "must be a plain name (it becomes runs/<arch>_<action>); use --output-dir for a path"
    return None


@section
class ModelSettings(Section):
    GROUP = "data"
    arch: str = option("-a", "--arch", "--model", metavar="ARCH", check=registered_model, group=OFFICIAL,
                       help="model, one of: " + ", ".join(list_models()))
    ksize: Optional[str] = option("--ksize", group=OFFICIAL, help="ECA kernel sizes: '3557', '3,5,5,7', one odd int, "
                                  "or 'adaptive' (default: the released sizes, or those in the checkpoint)")
    num_classes: Optional[int] = option("--num-classes", type=int, check=positive, group="data",
                                        help="classifier outputs (default: the dataset's, or the checkpoint's)")
    k_size: object = derived()  # as models.create_model takes it: per stage, one int, "adaptive" or None

    def check(self) -> None:
        k_size = model_family(self.arch).parse_ksize(self.ksize, self.arch)
        with torch.device("meta"):  # the model's own checks (e.g. --ksize for a model without ECA); no memory
            create_model(self.arch, k_size=k_size, num_classes=self.num_classes or 1000)


@section
class DataSettings(Section):
    GROUP = "data"
    data: Optional[str] = option(metavar="DIR", nargs="?", group=None,
                                 help="dataset folder with train/ and val/ (one sub-folder per class); omit it to use "
                                      "the built-in demo dataset")
    batch_size: int = option("-b", "--batch-size", type=int, check=positive_int, group=OFFICIAL,
                             help="global batch size, split over all processes")
    workers: Optional[int] = option("-j", "--workers", type=int, check=at_least(0), group=OFFICIAL,
                                    help="data-loading processes per training process (default: min(16, CPUs per "
                                         "process))")
    crop_size: int = option("--crop-size", type=int, check=image_side,
                            help="training crop and evaluation center crop, in pixels")
    train_crop_size: Optional[int] = option("--train-crop-size", type=int, check=image_side,
                                            help="training crop (default: --crop-size)")
    val_crop_size: Optional[int] = option("--val-crop-size", type=int, check=image_side,
                                          help="evaluation center crop (default: --crop-size)")
    val_resize: int = option("--val-resize", "--val-resize-size", type=int, check=image_side,
                             help="evaluation: resize the short side to this before the crop")
    crop_scale: float = option("--crop-scale", type=float, default=0.08, check=between(0, 1, closed_high=True,
                                                                                       open_low=True),
                               help="smallest area fraction of RandomResizedCrop (0.08: the official augmentation)")
    skip_corrupt: bool = option("--skip-corrupt", action="store_true", default=False,
                                help="evaluation: leave unreadable images out (reported) instead of stopping")
    data_backend: str = option("--data-backend", default="auto", choices=DATA_BACKENDS,
                               help="pil: PIL decode and float transforms in the workers (official); tensor: "
                                    "torchvision.io decode, uint8 crops, normalised on the device; gpu: workers read "
                                    "JPEG bytes, the device decodes, crops and flips (nvImageCodec if installed, else "
                                    "nvJPEG); auto: tensor on CUDA, pil on CPU")
    dummy: bool = option("--dummy", action="store_true", default=False,
                         help="synthetic random images (speed checks, no dataset)")
    per_process_batch: int = derived(0)
    label_names: Optional[Tuple[str, ...]] = derived()  # evaluation: the model's classes the val folders map onto

    @property
    def train_crop(self) -> int:
        return self.train_crop_size or self.crop_size

    @property
    def val_crop(self) -> int:
        return self.val_crop_size or self.crop_size

    def check(self) -> None:
        if self.val_crop > self.val_resize:
            flag = "--val-crop-size" if self.val_crop_size else "--crop-size"
            raise UserError(f"{flag} {self.val_crop} exceeds --val-resize {self.val_resize}: the center crop must fit "
                            "in the resized image")


@section
class AugmentSettings(Section):
    """Training augmentation beyond RandomResizedCrop and flip (torchvision's recipe options)."""
    GROUP = "training recipe"
    auto_augment: Optional[str] = option("--auto-augment", choices=AUTO_AUGMENT_POLICIES, group="training recipe",
                                         help="ra: RandAugment, ta_wide: TrivialAugmentWide, augmix: AugMix, imagenet: "
                                              "AutoAugment's ImageNet policy (pil and tensor pipelines)")
    ra_magnitude: int = option("--ra-magnitude", type=int, default=9, check=at_least(0), group="training recipe",
                               help="RandAugment's magnitude")
    augmix_severity: int = option("--augmix-severity", type=int, default=3, check=at_least(1),
                                  group="training recipe", help="AugMix's severity")
    random_erase: float = option("--random-erase", type=float, default=0.0, metavar="P", group="training recipe",
                                 check=between(0, 1, closed_high=True),
                                 help="probability of RandomErasing per training image (pil and tensor pipelines)")


@section
class NumericsSettings(Section):
    GROUP = "speed and numerics"
    amp: str = option("--amp", default="auto", choices=AMP_CHOICES, help="autocast dtype; auto = bf16 on CUDA, none on CPU")
    channels_last: Optional[bool] = option("--channels-last", action=argparse.BooleanOptionalAction,
                                           help="NHWC memory format (default: on for CUDA)")
    compile: Optional[bool] = option("--compile", action=argparse.BooleanOptionalAction,
                                     help="torch.compile the model (default: on for CUDA training)")
    compile_backend: str = option("--compile-backend", default="inductor",
                                  help="torch.compile backend (inductor generates kernels; aot_eager only traces, for "
                                       "debugging)")
    official_numerics: bool = option("--official-numerics", action="store_true", default=False,
                                     help="the official recipe's numerics: fp32, NCHW, eager (overrides the three "
                                          "above)")
    cpu: bool = option("--cpu", action="store_true", default=False, help="run on the CPU even if a GPU is present")
    deterministic: bool = option("--deterministic", action="store_true", default=False,
                                 help="deterministic kernels (slower on GPU)")
    eca_impl: str = option("--eca-impl", default="auto", choices=("auto",) + ECA_IMPLEMENTATIONS,
                           help="same weights and function, different kernels: conv (reference Conv1d gate), shifted "
                                "(gate as k shifted sums), fused (BN + ECA + residual in two memory passes, "
                                "models/fused_eca.py); auto: conv (see BENCHMARKS.md for what would change it)")
    device: str = derived("cpu")  # "cpu" or "cuda:N"


@section
class OptimSettings(Section):
    GROUP = "training recipe"
    lr: float = option("--lr", "--learning-rate", type=float, check=at_least(0), group=OFFICIAL,
                       help="initial learning rate for the global batch")
    momentum: float = option("--momentum", type=float, default=0.9, check=between(0, 1), group=OFFICIAL,
                             help="SGD momentum")
    weight_decay: float = option("--wd", "--weight-decay", type=float, check=at_least(0), group=OFFICIAL,
                                 help="weight decay")
    opt: str = option("--opt", default="sgd", choices=("sgd", "sgd_nesterov", "adamw"), group="training recipe",
                      help="optimizer (--momentum applies to the SGD ones)")
    norm_weight_decay: Optional[float] = option("--norm-weight-decay", type=float, check=at_least(0),
                                                group="training recipe",
                                                help="weight decay of normalisation layers' parameters (default: --wd)")
    clip_grad_norm: Optional[float] = option("--clip-grad-norm", type=float, check=above(0), group="training recipe",
                                             help="clip the gradients' total norm to this")


@section
class ScheduleSettings(Section):
    GROUP = "schedule and regularisation"
    lr_schedule: str = option("--lr-schedule", choices=SCHEDULES, help="step: x gamma every --lr-step epochs; exp: x "
                              "gamma every epoch; cosine: to 0 at the last epoch")
    lr_scheduler: Optional[str] = option("--lr-scheduler", choices=tuple(TORCHVISION_SCHEDULERS),
                                         help="torchvision's name for the same choice (steplr = step, "
                                              "cosineannealinglr = cosine, exponentiallr = exp)")
    lr_step: int = option("--lr-step", "--lr-step-size", type=int, default=30, check=positive_int,
                          help="epochs between decays of the step schedule")
    lr_gamma: Optional[float] = option("--lr-gamma", type=float, check=above(0),
                                       help="decay factor of the step and exp schedules")
    warmup_epochs: float = option("--warmup-epochs", "--lr-warmup-epochs", type=float, default=0.0,
                                  check=at_least(0), help="linear warm-up, per step, in epochs")
    lr_warmup_method: str = option("--lr-warmup-method", default="linear", choices=("linear",),
                                   help="the warm-up's shape (torchvision's name; only linear)")
    lr_warmup_decay: float = option("--lr-warmup-decay", type=float, default=0.0, check=between(0, 1),
                                    help="the warm-up starts at this fraction of --lr (torchvision's default is 0.01; "
                                         "0 here, as the runs before it)")


@section
class LoopSettings(Section):
    GROUP = "schedule and regularisation"
    epochs: int = option("--epochs", type=int, check=positive_int, group=OFFICIAL, help="total epochs")
    start_epoch: Optional[int] = option("--start-epoch", type=int, check=at_least(0), group=OFFICIAL,
                                        help="epoch to start at (default: 0, or the checkpoint's with --resume)")
    print_freq: int = option("-p", "--print-freq", type=int, default=10, check=positive_int, group=OFFICIAL,
                             help="progress line (or bar update) every N steps; also how often metrics are read "
                                  "from the device")
    label_smoothing: float = option("--label-smoothing", type=float, default=0.0, check=between(0, 1),
                                    group="schedule and regularisation", help="label smoothing of the loss")
    skip_nonfinite: int = option("--skip-nonfinite", type=int, default=0, metavar="N", check=at_least(0),
                                 group="schedule and regularisation",
                                 help="skip up to N steps whose loss is NaN/inf instead of stopping (syncs every step)")
    max_skipped: int = option("--max-skipped", type=int, default=100, check=at_least(0), group="data",
                              help="training: stop when an epoch holds more unreadable images than this")
    progress: bool = option("--progress", action=argparse.BooleanOptionalAction, default=True, group="output",
                            help="progress bars in a terminal; without them (and whenever the output is a file) one "
                                 "line every -p steps")


@section
class MixSettings(Section):
    """Batch-level MixUp / CutMix (0: off)."""
    GROUP = "training recipe"
    mixup_alpha: float = option("--mixup-alpha", type=float, default=0.0, check=at_least(0), group="training recipe",
                                help="MixUp's alpha (0: off); soft targets")
    cutmix_alpha: float = option("--cutmix-alpha", type=float, default=0.0, check=at_least(0), group="training recipe",
                                 help="CutMix's alpha (0: off); with both, each batch gets one of the two")

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


@section
class EmaSettings(Section):
    GROUP = "training recipe"
    model_ema: bool = option("--model-ema", action="store_true", default=False, group="training recipe",
                             help="keep an exponential moving average of the weights (torch.optim.swa_utils."
                                  "AveragedModel), evaluated and checkpointed beside the model; with -e: evaluate the "
                                  "checkpoint's average")
    model_ema_steps: int = option("--model-ema-steps", type=int, default=32, check=at_least(1), group="training recipe",
                                  help="steps between updates of the average")
    model_ema_decay: float = option("--model-ema-decay", type=float, default=0.99998, group="training recipe",
                                    check=between(0, 1, open_low=True),
                                    help="decay per image seen at the reference batch, as torchvision adjusts it")


@section
class OutputSettings(Section):
    GROUP = "output"
    output_dir: Optional[str] = option("--output-dir", help="run directory (default: runs/<arch>_<action>)")
    action: str = option("--action", default="", check=run_name, group=OFFICIAL,
                         help="suffix of the run name (runs/<arch>_<action>)")
    predictions: Optional[str] = option("--predictions", metavar="FILE", help="with -e: CSV of path, target, top-5")
    tensorboard: bool = option("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                               help="write TensorBoard scalars to the run directory")
    log_attention: bool = option("--log-attention", action="store_true", default=False,
                                 help="TensorBoard: ECA kernels and channel-gate histograms on a fixed val batch, each "
                                      "epoch")
    run_dir: str = derived("")


@section
class LaunchSettings(Section):
    """How the processes are started: torchrun's environment, or the official manual flags."""
    GROUP = "distributed"
    world_size: int = option("--world-size", type=int, default=-1, group="distributed",
                             help="number of processes for a manual launch")
    rank: int = option("--rank", type=int, default=-1, group="distributed", help="this process's rank for a manual launch")
    dist_url: str = option("--dist-url", default="env://", group="distributed",
                           help="rendezvous URL for a manual launch (tcp://HOST:PORT; env:// reads MASTER_ADDR and "
                                "MASTER_PORT)")
    dist_backend: Optional[str] = option("--dist-backend", group="distributed",
                                         help="nccl or gloo (default: nccl on GPUs, gloo on CPU)")
    dist_timeout: float = option("--dist-timeout", type=float, default=30.0, check=above(0), group="distributed",
                                 help="minutes before a stuck collective fails")
    sync_bn: bool = option("--sync-bn", action="store_true", default=False, group="distributed",
                           help="synchronise BatchNorm statistics across processes")
    gpu: Optional[int] = option("--gpu", type=int, check=at_least(0), group=OFFICIAL, help="use only this GPU index")
    processes: int = derived(1)
    data_parallel: bool = derived(False)  # several GPUs without a launcher: the official DataParallel

    @property
    def manual(self) -> bool:
        """Started by hand with the official flags (not by torchrun, whose environment wins)."""
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 and self.world_size > 1

    def check(self) -> None:
        if self.world_size > 1 and self.rank >= self.world_size:
            raise UserError(f"--rank {self.rank} is not below --world-size {self.world_size}")
        if 0 <= self.world_size <= 1 and self.rank > 0:
            raise UserError(f"--rank {self.rank} needs --world-size above it (the number of processes); with one "
                            "process leave --rank out")
        if not self.manual:
            return
        if self.rank < 0:
            raise UserError(f"--world-size {self.world_size} without torchrun needs --rank for this process "
                            f"(0 .. {self.world_size - 1}); or launch with torchrun --nproc_per_node="
                            f"{self.world_size}, which sets both")
        if self.dist_url == "env://" and not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
            raise UserError(f"--world-size {self.world_size} without torchrun needs a rendezvous: --dist-url "
                            "tcp://HOST:PORT (rank 0's address), or MASTER_ADDR and MASTER_PORT in the environment")


@section
class RunSettings(Section):
    """What the run is: training or evaluation, from which weights, with which seed."""
    GROUP = "official flags"
    evaluate: bool = option("-e", "--evaluate", action="store_true", default=False, group=OFFICIAL,
                            help="evaluate on DIR/val and exit")
    resume: str = option("--resume", default="", metavar="PATH", group=OFFICIAL,
                         help="checkpoint to resume training from (with -e: to evaluate); 'auto': the run folder's "
                              "checkpoint if there is one, else a fresh start (a requeued job reruns the same command)")
    pretrained: object = option("--pretrained", nargs="?", const=True, metavar="PATH", group=OFFICIAL,
                                help="initialise from this checkpoint's weights (e.g. a released .pth.tar)")
    seed: Optional[int] = option("--seed", type=int, check=seed_range, group=OFFICIAL,
                                 help="seed for weights, data order and augmentation (default: drawn, and saved)")
    class_names: Tuple[str, ...] = derived(())
    train_images: int = derived(0)  # checked on a mid-epoch resume: the rest of the epoch depends on it
    auto_resume: bool = derived(False)  # --resume auto was given (`resume` is then the folder's checkpoint or "")

    @property
    def weights_source(self) -> str:
        return self.resume or (self.pretrained if isinstance(self.pretrained, str) else "")

    def check(self) -> None:
        if self.resume and self.pretrained:
            raise UserError("--resume continues a run and --pretrained starts a new one from a checkpoint's weights: "
                            "give one of them")
        if self.resume == "auto" and self.evaluate:
            raise UserError("--resume auto continues training; to evaluate, give the checkpoint: -e --resume FILE")
        for flag, path in (("--resume", self.resume if self.resume != "auto" else ""),
                           ("--pretrained", self.pretrained if isinstance(self.pretrained, str) else "")):
            if path and not os.path.isfile(path):
                what = "is a folder" if os.path.isdir(path) else "no such file"
                hint = ("; give the path of a .pth.tar checkpoint (or --resume auto: the run folder's checkpoint, if "
                        "there is one)") if flag == "--resume" else ""
                raise UserError(f"{flag} {path!r}: {what}{hint}")
        if self.pretrained is True:
            raise UserError("--pretrained needs the path of a checkpoint (released weights cannot be downloaded "
                            "here), e.g. --pretrained eca_resnet50_k3557.pth.tar")
        if self.evaluate and not self.weights_source:
            raise UserError("-e evaluates a checkpoint: give it with --resume FILE (or --pretrained FILE); without one "
                            "the weights would be random")


# Section of the RunConfig -> its class, in the order of --help.
SECTIONS = {
    "run": RunSettings, "model": ModelSettings, "data": DataSettings, "augment": AugmentSettings,
    "numerics": NumericsSettings, "optim": OptimSettings, "schedule": ScheduleSettings, "loop": LoopSettings,
    "mix": MixSettings, "ema": EmaSettings, "output": OutputSettings, "launch": LaunchSettings,
}
