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

from models import WeightsFile, create_model, format_ksize
from models.weights import CheckpointError

from . import cli
from .arg_checks import check_values, parse_arch_ksize
from .config import (EmaSettings, LaunchSettings, LoopSettings, MixSettings, ModelSettings, NumericsSettings,
                     OptimSettings, OutputSettings, RunConfig, ScheduleSettings, frozen)
from .data import DataSettings
from .data.augment import Augment
from .dataset_checks import check_dataset
from .distributed import DistContext, broadcast_object, init_distributed, say
from .errors import UserError
from .files import check_output_dir, check_output_file
from .run_folder import RunFolder, existing_run_file, trained_run_file


@dataclass
class Prepared:
    """A run ready to start: its configuration, its processes, the checkpoint it starts from (read once),
    and, on rank 0 of a training run, the run folder it holds."""
    config: RunConfig
    ctx: DistContext
    weights: Optional[WeightsFile]
    folder: Optional[RunFolder] = None


def _apply_defaults(args: argparse.Namespace, defaults: Dict, explicit: set) -> None:
    for key, value in defaults.items():
        if key not in explicit:
            setattr(args, key, value)


def parse_command_line(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str):
    """The parsed and checked command line, and the names of the options the user typed. Without DIR (and
    without --dummy), the built-in demo dataset and its small-image defaults."""
    parser = cli.build_parser(recipe, description)
    args = parser.parse_args(argv)
    explicit = cli.explicit_options(parser, argv)
    builtin_data = args.data is None and not args.dummy
    if builtin_data:
        _apply_defaults(args, builtin, explicit)
    check_values(args)
    if builtin_data:
        from .builtin_dataset import ensure_builtin_dataset

        args.data = str(ensure_builtin_dataset())
        say(f"=> no DIR given: using the built-in demo dataset at {args.data} (10 classes of shapes, 64 px)",
            file=sys.stderr)
    return args, explicit


def _layer_kernels(arch: str, k_size) -> Optional[list]:
    """The kernel size of every ECA layer `arch` gets from `k_size` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return getattr(create_model(arch, k_size=k_size), "k_size", None)


def _model_identity(args, explicit: set, weights: Optional[WeightsFile]) -> Tuple[str, object]:
    """arch and k_size: as given, else read from the checkpoint's tensors; a given --ksize that disagrees
    with the file is an error naming both."""
    arch = args.arch
    if weights is not None and "arch" not in explicit:
        detected = weights.arch
        if detected and detected != arch:
            say(f"=> {weights.path}: tensors match {detected}; using it (pass -a to override)")
            arch = detected
    k_size = parse_arch_ksize(arch, args.ksize)
    file_kernels = weights.kernels(arch) if weights is not None else None
    if k_size is not None and file_kernels is not None:
        given, saved = _layer_kernels(arch, k_size), _layer_kernels(arch, file_kernels)
        if given != saved:
            raise CheckpointError(
                f"--ksize {args.ksize} disagrees with {weights.path}, whose ECA kernels are "
                f"{format_ksize(saved)}: drop --ksize (it is read from the file) or use the matching file")
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


def _numerics(args, device: torch.device, graph_breaking: str) -> NumericsSettings:
    """`graph_breaking`: why torch.compile cannot help this run ("" if it can)."""
    cuda = device.type == "cuda"
    amp, channels_last, compiled = args.amp, args.channels_last, args.compile
    if args.official_numerics:
        amp, channels_last, compiled = "none", False, False
    if amp == "auto":
        amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if amp == "fp16" and not cuda:
        raise UserError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or --amp none")
    if compiled is None:
        compiled = cuda and not args.evaluate and not graph_breaking
        if cuda and not args.evaluate and graph_breaking:
            say(f"=> not compiling: {graph_breaking} (pass --compile to compile anyway)")
    return NumericsSettings(
        device=str(device), amp=amp, channels_last=cuda if channels_last is None else channels_last,
        compile=compiled, compile_backend=args.compile_backend, deterministic=args.deterministic)


def _graph_breaking(args, data_parallel: bool) -> str:
    """Why torch.compile would not pay off: DataParallel replicates the module every step (a compiled
    DataParallel gives no multi-GPU speed-up) and SyncBatchNorm's collectives break the graph."""
    if data_parallel:
        return "DataParallel (several GPUs without torchrun) gains nothing from it; torchrun gives one process per GPU"
    if args.sync_bn:
        return "--sync-bn's collectives break the compiled graph"
    return ""


def _eca_impl(args, numerics: NumericsSettings) -> str:
    # The fused block end only pays off once torch.compile turns it into few kernels, and needs a plain
    # BatchNorm (SyncBatchNorm layers keep the reference path anyway).
    if args.eca_impl == "auto":
        return "fused" if numerics.compile and not args.sync_bn else "conv"
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


def _weights_source(args) -> Tuple[str, str]:
    """(--resume path, --pretrained path), "" for none; --resume auto becomes the run folder's checkpoint
    if it has one (a requeued job runs the same command), else nothing: a fresh start."""
    resume = args.resume
    if resume == "auto":
        candidate = os.path.join(_run_dir(args, args.arch), "checkpoint.pth.tar")
        resume = candidate if os.path.isfile(candidate) else ""
    pretrained = args.pretrained if isinstance(args.pretrained, str) else ""
    return resume, pretrained


def _check_outputs(args, run_dir: str, resume: str) -> None:
    """The output locations, before any work: usable folders, and a training run's folder not another run's."""
    flag = "--output-dir" if args.output_dir else "the run folder (--output-dir changes it)"
    check_output_dir(run_dir, flag)
    if args.evaluate:
        if args.predictions:
            check_output_file(args.predictions, "--predictions")
        return
    found = existing_run_file(run_dir)
    resuming_here = resume and os.path.dirname(os.path.abspath(resume)) == os.path.abspath(run_dir)
    if not found or resuming_here:
        return
    if args.resume == "auto":  # the folder has no checkpoint.pth.tar (else `resume` would name it)
        trained = trained_run_file(run_dir)
        if trained is None:
            return  # the run there was killed before its first checkpoint: a requeued job starts it again
        raise UserError(f"--resume auto: {run_dir} has no checkpoint.pth.tar, but its {trained} shows that a run "
                        f"trained there; resume from a file explicitly (--resume {os.path.join(run_dir, trained)} "
                        "if it is a checkpoint), or give this run its own --output-dir")
    raise UserError(f"{run_dir} already holds a run ({found}): continue it with --resume auto, or give this run "
                    "its own --output-dir")


def _check_start(args, weights: Optional[WeightsFile], classes: Optional[list], train_images: int) -> None:
    """A resumed run continues the same experiment: the same classes, and for a stop in the middle of an
    epoch the same global batch, seed and images, which fix the rest of the epoch's batches."""
    if args.evaluate and weights is None:
        raise UserError("-e evaluates a checkpoint: give it with --resume FILE (or --pretrained FILE); without one "
                        "the weights would be random")
    if not args.resume or weights is None or args.evaluate:
        return
    saved = weights.checkpoint
    names = saved.get("class_names")
    if names and classes and list(names) != list(classes):
        differ = [f"{a} vs {b}" for a, b in zip(names, classes) if a != b][:2] or [f"{len(names)} vs {len(classes)}"]
        raise CheckpointError(f"{weights.path} was trained on other classes than {args.data} holds ({', '.join(differ)}): "
                              "resuming would re-mean its labels; to start a new run from its weights use --pretrained")
    step, old = int(saved.get("step", 0)), saved.get("args", {})
    if step and isinstance(old, dict):
        now = {"-b": args.batch_size, "--seed": args.seed if args.seed is not None else old.get("seed"),
               "train images": train_images}
        before = {"-b": old.get("batch_size"), "--seed": old.get("seed"), "train images": old.get("train_images")}
        changed = [f"{key} {before[key]} -> {now[key]}" for key in now
                   if before[key] is not None and now[key] != before[key]]
        if changed:
            raise UserError(f"{weights.path} stopped in the middle of epoch {saved.get('epoch')} (step {step}); the "
                            f"rest of that epoch is fixed by -b, --seed and the images, which changed "
                            f"({', '.join(changed)}): resume with the same ones, or restart that epoch with "
                            f"--start-epoch {saved.get('epoch')}")


def _check_batch(train_images: int, per_process: int, world_size: int) -> None:
    if train_images and train_images // world_size < per_process:
        raise UserError(f"train/ holds {train_images} images, fewer than one batch per process (-b "
                        f"{per_process * world_size} over {world_size} process(es)): lower -b")


def _lr_schedule(args, explicit: set) -> str:
    """--lr-schedule, or torchvision's --lr-scheduler name for the same choice."""
    if args.lr_scheduler is None:
        return args.lr_schedule
    chosen = cli.TORCHVISION_SCHEDULERS[args.lr_scheduler]
    if "lr_schedule" in explicit and args.lr_schedule != chosen:
        raise UserError(f"--lr-schedule {args.lr_schedule} and --lr-scheduler {args.lr_scheduler} disagree: give one")
    return chosen


def _data_settings(args, ctx: DistContext, seed: int, numerics: NumericsSettings, labels) -> DataSettings:
    """`labels`: (num_classes, the model's class names for the val folders or None)."""
    return DataSettings(
        data=None if args.dummy else args.data, data_backend=_data_backend(args, ctx.device),
        train_crop_size=args.train_crop_size or args.crop_size, val_crop_size=args.val_crop_size or args.crop_size,
        crop_scale=args.crop_scale, val_resize=args.val_resize,
        per_process_batch=_per_process_batch(args.batch_size, ctx.world_size),
        workers=_default_workers() if args.workers is None else args.workers, seed=seed,
        skip_corrupt=args.skip_corrupt or not args.evaluate,  # validation within training: skip and report
        num_classes=labels[0], channels_last=numerics.channels_last, label_names=labels[1],
        augment=Augment(args.auto_augment, args.ra_magnitude, args.augmix_severity, args.random_erase))


def _training_settings(args, explicit: set) -> dict:
    """The sections only training uses."""
    return dict(
        optim=OptimSettings(args.opt, args.lr, args.momentum, args.weight_decay, args.norm_weight_decay,
                            args.clip_grad_norm),
        schedule=ScheduleSettings(_lr_schedule(args, explicit), args.lr, args.lr_step, args.lr_gamma, args.warmup_epochs,
                                  args.epochs, args.lr_warmup_decay),
        mix=MixSettings(args.mixup_alpha, args.cutmix_alpha),
        ema=EmaSettings(args.model_ema, args.model_ema_steps, args.model_ema_decay),
        loop=LoopSettings(args.epochs, args.print_freq, args.skip_nonfinite, args.max_skipped, args.label_smoothing,
                          args.progress))


def resolve(args, explicit: set, ctx: DistContext, dataset: Tuple[Optional[list], int]) \
        -> Tuple[RunConfig, Optional[WeightsFile]]:
    """The RunConfig of a parsed command line in this process group, and the checkpoint it starts from.
    `dataset`: the class folders (None for synthetic data) and the number of training images."""
    classes, train_images = dataset
    resume, pretrained = _weights_source(args)
    source = resume or pretrained
    weights = _read_weights(source, args) if source else None
    arch, k_size = _model_identity(args, explicit, weights)
    run_dir = _run_dir(args, args.arch if args.resume == "auto" else arch)
    _check_outputs(args, run_dir, resume)
    _check_start(args, weights, classes, train_images)
    num_classes = _class_count(args, weights, classes)
    data_parallel = (ctx.device.type == "cuda" and not ctx.distributed and args.gpu is None
                     and torch.cuda.device_count() > 1)
    numerics = _numerics(args, ctx.device, _graph_breaking(args, data_parallel))
    seed = _seed(args, weights)
    data = _data_settings(args, ctx, seed, numerics, (num_classes, _label_names(args, weights, classes, num_classes)))
    _check_batch(train_images, data.per_process_batch, ctx.world_size)
    config = RunConfig(
        evaluate=args.evaluate, resume=resume, pretrained=pretrained if not resume else "", seed=seed,
        start_epoch=args.start_epoch, class_names=tuple(classes or ()), train_images=train_images,
        model=ModelSettings(arch, k_size, num_classes, _eca_impl(args, numerics)), data=data, numerics=numerics,
        output=OutputSettings(run_dir, args.tensorboard, args.log_attention, args.predictions),
        launch=LaunchSettings(ctx.world_size, args.sync_bn, data_parallel), given=frozen(vars(args)),
        **_training_settings(args, explicit))
    return config, weights


def _read_weights(path: str, args) -> WeightsFile:
    """The checkpoint; for `-e --model-ema`, the moving average it holds."""
    if args.evaluate and args.model_ema:
        return WeightsFile.read(path, entry="model_ema")
    return WeightsFile.read(path)


def _claim_run_folder(config: RunConfig, ctx: DistContext) -> Optional[RunFolder]:
    """Rank 0 of a training run takes its folder; every rank learns whether it could."""
    if config.evaluate:
        return None
    folder, problem = RunFolder(config.output.run_dir), None
    if ctx.is_main:
        try:
            folder.claim()
        except UserError as exc:
            problem = str(exc)
    problem = broadcast_object(problem)
    if problem:
        raise UserError(problem)
    return folder if ctx.is_main else None


def prepare(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str) -> Prepared:
    """Parse, check, start the process group, resolve, take the run folder: everything before any work."""
    args, explicit = parse_command_line(argv, recipe, builtin, description)
    dataset = (None, 0) if args.dummy else check_dataset(args.data, need_train=not args.evaluate)
    ctx = init_distributed(args)
    config, weights = resolve(args, explicit, ctx, dataset)
    return Prepared(config, ctx, weights, _claim_run_folder(config, ctx))
