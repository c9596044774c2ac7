"""Settling a run's configuration, once, before any work: the command line, the recipe's defaults, and
every automatic or checkpoint-derived value (numerics, compilation, ECA form, input pipeline, workers,
seed, class count, and the architecture, kernel sizes and classes a checkpoint holds) go into one frozen
RunConfig. Every problem found here is a UserError (exit 2) raised before anything is written.
"""
import argparse
import os
import random
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch

from models import WeightsFile, format_ksize, list_models, parse_ksize, unknown_model_message
from models.weights import CheckpointError

from . import cli
from .config import (LaunchSettings, LoopSettings, ModelSettings, NumericsSettings, OptimSettings, OutputSettings,
                     RunConfig, ScheduleSettings, frozen)
from .data import DataSettings
from .dataset_checks import check_dataset
from .distributed import DistContext, broadcast_object, init_distributed, say
from .errors import UserError


@dataclass
class Prepared:
    """A run ready to start: its configuration, its processes, and the checkpoint it starts from (read once)."""
    config: RunConfig
    ctx: DistContext
    weights: Optional[WeightsFile]


def _apply_defaults(args: argparse.Namespace, defaults: Dict, explicit: set) -> None:
    for key, value in defaults.items():
        if key not in explicit:
            setattr(args, key, value)


def _validate(args: argparse.Namespace) -> None:
    """Reject invalid values before anything starts, with the fix in the message."""
    if args.arch not in list_models():
        raise UserError(unknown_model_message(args.arch))
    parse_ksize(args.ksize)  # raises a UserError naming the accepted forms
    positive = {"--batch-size": args.batch_size, "--epochs": args.epochs, "--crop-size": args.crop_size,
                "--val-resize": args.val_resize, "--print-freq": args.print_freq, "--lr-step": args.lr_step}
    for flag, value in positive.items():
        if value is None or value <= 0:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.num_classes is not None and args.num_classes <= 0:
        raise UserError(f"--num-classes must be positive, got {args.num_classes}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if args.lr is None or args.lr < 0:
        raise UserError(f"--lr must be >= 0, got {args.lr}")
    if args.weight_decay < 0 or args.momentum < 0:
        raise UserError("--wd and --momentum must be >= 0")
    if args.start_epoch is not None and args.start_epoch < 0:
        raise UserError(f"--start-epoch must be >= 0, got {args.start_epoch}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0.0 < args.crop_scale <= 1.0:
        raise UserError(f"--crop-scale must be in (0, 1], got {args.crop_scale}")
    if args.skip_nonfinite < 0 or args.max_skipped < 0:
        raise UserError("--skip-nonfinite and --max-skipped must be >= 0")
    if args.warmup_epochs < 0:
        raise UserError(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    if args.crop_size > args.val_resize:
        raise UserError(f"--crop-size {args.crop_size} exceeds --val-resize {args.val_resize}: the center crop "
                        "must fit in the resized image")
    if args.predictions and not args.evaluate:
        raise UserError("--predictions is written by an evaluation: add -e")
    if args.resume and not os.path.isfile(args.resume):
        raise UserError(f"--resume {args.resume!r}: no such file; give the path of a .pth.tar checkpoint")
    if args.pretrained is True:
        raise UserError("--pretrained needs the path of a checkpoint (released weights cannot be downloaded "
                        "here), e.g. --pretrained eca_resnet50_k3557.pth.tar")
    if args.pretrained and not os.path.isfile(args.pretrained):
        raise UserError(f"--pretrained {args.pretrained!r}: no such file")


def parse_command_line(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str):
    """The parsed and checked command line, and the names of the options the user typed. Without DIR (and
    without --dummy), the built-in demo dataset and its small-image defaults."""
    parser = cli.build_parser(recipe, description)
    args = parser.parse_args(argv)
    explicit = cli.explicit_options(parser, argv)
    builtin_data = args.data is None and not args.dummy
    if builtin_data:
        _apply_defaults(args, builtin, explicit)
    _validate(args)
    if builtin_data:
        from .builtin_dataset import ensure_builtin_dataset

        args.data = str(ensure_builtin_dataset())
        say(f"=> no DIR given: using the built-in demo dataset at {args.data} (10 classes of shapes, 64 px)",
            file=sys.stderr)
    return args, explicit


def _model_identity(args, explicit: set, weights: Optional[WeightsFile]) -> Tuple[str, object]:
    """arch and k_size: as given, else read from the checkpoint's tensors; a given --ksize that disagrees
    with the file is an error naming both."""
    arch, k_size = args.arch, parse_ksize(args.ksize)
    if weights is None:
        return arch, k_size
    if "arch" not in explicit:
        detected = weights.arch
        if detected and detected != arch:
            say(f"=> {weights.path}: tensors match {detected}; using it (pass -a to override)")
            arch = detected
    file_kernels = weights.kernels(arch)
    if isinstance(k_size, list) and file_kernels is not None and k_size != file_kernels:
        raise CheckpointError(
            f"--ksize {format_ksize(k_size)} disagrees with {weights.path}, whose ECA kernels are "
            f"{format_ksize(file_kernels)}: drop --ksize (it is read from the file) or use the matching file")
    if k_size is None and file_kernels is not None:
        k_size = file_kernels
    return arch, k_size


def _class_count(args, weights: Optional[WeightsFile], classes: Optional[list]) -> int:
    num_classes = args.num_classes
    if num_classes is None and weights is not None:
        num_classes = weights.num_classes
    if num_classes is None:
        num_classes = len(classes) if classes else 1000
    if classes and len(classes) > num_classes:
        raise UserError(f"the dataset has {len(classes)} classes but the model has {num_classes} outputs: "
                        f"use --num-classes {len(classes)} (or a checkpoint trained on these classes)")
    return num_classes


def _label_names(args, weights: Optional[WeightsFile], classes: Optional[list], num_classes: int):
    """Evaluation with a checkpoint that names its classes: those names, onto which the val folders are
    mapped (a val folder may hold a subset of them). None otherwise."""
    if not args.evaluate or not classes:
        return None
    names = (weights.checkpoint if weights else {}).get("class_names")
    if names and list(names) != list(classes):
        unknown = [c for c in classes if c not in set(names)]
        if unknown:
            raise UserError(f"val classes {unknown[:3]} are not among the checkpoint's classes")
        return tuple(names)
    if not names and len(classes) != num_classes:
        # Official checkpoints do not name their classes: targets are the folder's sorted positions.
        say(f"warning: val/ has {len(classes)} class folders but the model {num_classes} outputs; targets are "
            "the folders' sorted positions, so use the full, sorted class list (e.g. all 1000 ImageNet folders)",
            file=sys.stderr)
    return None


def _seed(args, weights: Optional[WeightsFile]) -> int:
    """--seed, else the resumed run's, else a random one drawn by rank 0 and shared (stored, so a resume
    continues with it)."""
    if args.seed is not None:
        return args.seed
    if args.resume and weights is not None:
        saved = weights.checkpoint.get("args", {})
        if isinstance(saved, dict) and saved.get("seed") is not None:
            return int(saved["seed"])
    return broadcast_object(random.SystemRandom().randrange(2 ** 31))


def _numerics(args, device: torch.device) -> NumericsSettings:
    cuda = device.type == "cuda"
    amp, channels_last, compiled = args.amp, args.channels_last, args.compile
    if args.official_numerics:
        amp, channels_last, compiled = "none", False, False
    if amp == "auto":
        amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if amp == "fp16" and not cuda:
        raise UserError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or --amp none")
    return NumericsSettings(
        device=str(device), amp=amp, channels_last=cuda if channels_last is None else channels_last,
        compile=(cuda and not args.evaluate) if compiled is None else compiled,
        compile_backend=args.compile_backend, deterministic=args.deterministic)


def _eca_impl(args, numerics: NumericsSettings) -> str:
    # The fused block end only pays off once torch.compile turns it into few kernels.
    if args.eca_impl == "auto":
        return "fused" if numerics.compile else "conv"
    return args.eca_impl


def _data_backend(args, device: torch.device) -> str:
    """auto: the tensor pipeline on CUDA (uint8 to the GPU), PIL (the official path) on the CPU. The gpu
    pipeline stays opt-in until it has been measured on a GPU (BENCHMARKS.md). Synthetic data: pil."""
    if args.dummy:
        return "pil"
    if args.data_backend == "auto":
        return "tensor" if device.type == "cuda" else "pil"
    return args.data_backend


def _per_process_batch(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is the global batch and must divide by the {world_size} "
                        f"processes; use a multiple of {world_size}")
    return batch_size // world_size


def _default_workers() -> int:
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(16, (os.cpu_count() or 1) // max(1, per_node)))


def _run_dir(args, arch: str) -> str:
    return args.output_dir or os.path.join("runs", f"{arch}_{args.action}" if args.action else arch)


def resolve(args, explicit: set, ctx: DistContext, classes: Optional[list]) -> Tuple[RunConfig, Optional[WeightsFile]]:
    """The RunConfig of a parsed command line in this process group, and the checkpoint it starts from.
    `classes`: the dataset's class folders (None for synthetic data)."""
    pretrained = args.pretrained if isinstance(args.pretrained, str) and not args.resume else ""
    source = args.resume or pretrained
    weights = WeightsFile.read(source) if source else None
    arch, k_size = _model_identity(args, explicit, weights)
    num_classes = _class_count(args, weights, classes)
    numerics = _numerics(args, ctx.device)
    seed = _seed(args, weights)
    data = DataSettings(
        data=None if args.dummy else args.data, data_backend=_data_backend(args, ctx.device),
        crop_size=args.crop_size, crop_scale=args.crop_scale, val_resize=args.val_resize,
        per_process_batch=_per_process_batch(args.batch_size, ctx.world_size),
        workers=_default_workers() if args.workers is None else args.workers, seed=seed,
        skip_corrupt=args.skip_corrupt, num_classes=num_classes, channels_last=numerics.channels_last,
        label_names=_label_names(args, weights, classes, num_classes))
    data_parallel = (ctx.device.type == "cuda" and not ctx.distributed and args.gpu is None
                     and torch.cuda.device_count() > 1)
    config = RunConfig(
        evaluate=args.evaluate, resume=args.resume, pretrained=pretrained, seed=seed,
        start_epoch=args.start_epoch, class_names=tuple(classes or ()),
        model=ModelSettings(arch, k_size, num_classes, _eca_impl(args, numerics)),
        data=data, numerics=numerics,
        optim=OptimSettings(args.lr, args.momentum, args.weight_decay),
        schedule=ScheduleSettings(args.lr_schedule, args.lr, args.lr_step, args.lr_gamma, args.warmup_epochs,
                                  args.epochs),
        loop=LoopSettings(args.epochs, args.print_freq, args.skip_nonfinite, args.max_skipped, args.label_smoothing,
                          args.progress),
        output=OutputSettings(_run_dir(args, arch), args.tensorboard, args.log_attention, args.predictions),
        launch=LaunchSettings(ctx.world_size, args.sync_bn, data_parallel),
        given=frozen(vars(args)))
    return config, weights


def prepare(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str) -> Prepared:
    """Parse, check, start the process group and resolve: everything before any work."""
    args, explicit = parse_command_line(argv, recipe, builtin, description)
    classes = None if args.dummy else check_dataset(args.data, need_train=not args.evaluate)
    ctx = init_distributed(args)
    config, weights = resolve(args, explicit, ctx, classes)
    return Prepared(config, ctx, weights)

