"""run(): the one driver behind main.py and light_main.py.

Order: parse and validate everything (one-line errors, exit 2, before any work), set up processes,
data, model and optimizer, optionally resume, then evaluate or train. Only rank 0 prints and writes.
"""
import os
import random
import sys
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from models import CheckpointError, format_ksize
from utils import checkpoint as ckpt
from utils import cli
from utils.data import CorruptImageError, build_datasets, build_val_loader, relative_paths, resolve_backend
from utils.dataset_checks import DatasetError, check_dataset
from utils.distributed import DistContext, broadcast_object, cleanup, init_distributed
from utils.engine import Numerics, NonFiniteLossError, TooManyUnreadableImages, evaluate
from utils.model_setup import build_model, resolve_from_checkpoint, wrap_model
from utils.run_logger import RunLogger
from utils.trainer import CheckpointWriteError, seed_everything, train

USER_ERRORS = (ValueError, DatasetError, CheckpointError)
RUN_ERRORS = (NonFiniteLossError, TooManyUnreadableImages, CorruptImageError)


def one_line(exc: BaseException) -> str:
    """The error's own message on one line. Errors raised in DataLoader workers come back wrapped in
    a traceback; their last line holds the original message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in str(exc):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return " ".join(lines) or type(exc).__name__


class TargetRemap:
    """Maps a val folder's class index to the checkpoint's class index (picklable for workers)."""

    def __init__(self, mapping: Dict[int, int]):
        self.mapping = mapping

    def __call__(self, target: int) -> int:
        return self.mapping[target]


def resolve_numerics(args, device: torch.device) -> Numerics:
    cuda = device.type == "cuda"
    if args.official_numerics:
        args.amp, args.channels_last, args.compile = "none", False, False
    if args.amp == "auto":
        args.amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if args.amp == "fp16" and not cuda:
        raise ValueError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or --amp none")
    if args.channels_last is None:
        args.channels_last = cuda
    if args.compile is None:
        args.compile = cuda and not args.evaluate
    if args.eca_impl == "auto":
        # The fused block end only pays off once torch.compile turns it into few kernels.
        args.eca_impl = "fused" if args.compile else "conv"
    if cuda:
        # TF32 convolutions and matmuls, as the official run had by default (SPEC §10's fp32 baseline).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not args.deterministic
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    return Numerics(device, dtype, args.channels_last)


def prepare_args(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str):
    parser = cli.build_parser(recipe, description)
    args = parser.parse_args(argv)
    explicit = cli.explicit_options(parser, argv)
    if args.data is None and not args.dummy:
        from utils.builtin_dataset import ensure_builtin_dataset

        cli.apply_defaults(args, builtin, explicit)
        args.data = str(ensure_builtin_dataset())
        if _launch_rank(args) == 0:
            print(f"=> no DIR given: using the built-in demo dataset at {args.data} "
                  "(10 classes of shapes, 64 px)", file=sys.stderr)
    if args.workers is None:
        args.workers = cli.default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cli.validate(args)
    return args, explicit


def _launch_rank(args) -> int:
    """This process's rank before the process group exists: torchrun's RANK, or the official manual
    launch's --rank; 0 for a single process."""
    return int(os.environ.get("RANK", max(args.rank, 0)))


def read_start_checkpoint(args, explicit, say):
    """The checkpoint to start from (--resume wins over --pretrained) and its unwrapped weights."""
    path = args.resume or (args.pretrained if isinstance(args.pretrained, str) else "")
    if not path:
        return None, None, ""
    checkpoint, state_dict = ckpt.load_for_model(path)
    resolve_from_checkpoint(args, explicit, state_dict, path, say)
    return checkpoint, state_dict, path


def class_count_and_remap(args, val_set, train_set, checkpoint, warn=print) -> None:
    """Choose num_classes and, for evaluation with a checkpoint that names its classes, map the val
    folder's indices to the checkpoint's (a val folder may hold a subset of the classes)."""
    classes = getattr(train_set or val_set, "classes", None)
    if args.num_classes is None:
        args.num_classes = len(classes) if classes else 1000
    if classes and len(classes) > args.num_classes:
        raise ValueError(f"the dataset has {len(classes)} classes but the model has {args.num_classes} outputs: "
                         f"use --num-classes {len(classes)} (or a checkpoint trained on these classes)")
    names = (checkpoint or {}).get("class_names")
    if train_set is None and names and hasattr(val_set, "class_to_idx") and val_set.classes != list(names):
        position = {name: i for i, name in enumerate(names)}
        unknown = [c for c in val_set.classes if c not in position]
        if unknown:
            raise ValueError(f"val classes {unknown[:3]} are not among the checkpoint's classes")
        val_set.target_transform = TargetRemap({i: position[c] for i, c in enumerate(val_set.classes)})
    elif train_set is None and classes and not names and len(classes) != args.num_classes:
        # Official checkpoints do not name their classes: targets are the folder's sorted positions.
        warn(f"warning: val/ has {len(classes)} class folders but the model {args.num_classes} outputs; targets are "
             "the folders' sorted positions, so use the full, sorted class list (e.g. all 1000 ImageNet folders)",
             file=sys.stderr)


def write_predictions(path: str, rows, val_set) -> None:
    paths = relative_paths(val_set)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        width = len(rows[0][2]) if rows else 5
        f.write(",".join(["path", "target"] + [f"top{k + 1}" for k in range(width)]) + "\n")
        for index, target, top in rows:
            name = paths[index] if paths else str(index)
            f.write(",".join([name, str(target)] + [str(t) for t in top]) + "\n")
    os.replace(tmp, path)


def run(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str) -> int:
    prog = os.path.basename(sys.argv[0]) or "main.py"
    try:
        args, explicit = prepare_args(argv, recipe, builtin, description)
        if not args.dummy:
            check_dataset(args.data, need_train=not args.evaluate)
        ctx = init_distributed(args)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        return _run(args, explicit, ctx)
    except USER_ERRORS as exc:
        if ctx.is_main:
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (*RUN_ERRORS, CheckpointWriteError) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 3
    finally:
        cleanup()


def _run(args, explicit, ctx: DistContext) -> int:
    say = print if ctx.is_main else (lambda *a, **k: None)
    args.per_process_batch = cli.split_batch(args.batch_size, ctx.world_size)
    numerics = resolve_numerics(args, ctx.device)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    checkpoint, state_dict, source = read_start_checkpoint(args, explicit, say)
    if args.seed is None:
        saved = (checkpoint or {}).get("args", {}) if args.resume else {}
        args.seed = saved.get("seed") if isinstance(saved, dict) and saved.get("seed") is not None else None
        if args.seed is None:
            args.seed = broadcast_object(random.SystemRandom().randrange(2 ** 31))
    args.data_backend = resolve_backend(args, ctx.device)
    train_set, val_set = build_datasets(args, need_train=not args.evaluate, backend=args.data_backend)
    class_count_and_remap(args, val_set, train_set, checkpoint, warn=say)

    seed_everything(args.seed, 0)
    model = build_model(args, state_dict, source)
    runner = wrap_model(model, ctx, numerics, args, is_training=not args.evaluate)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing).to(ctx.device)
    run_dir = args.output_dir or os.path.join("runs", cli.run_name(args))
    logger = RunLogger(run_dir, ctx.is_main, args.tensorboard)
    val_loader = build_val_loader(val_set, args, ctx)
    say(f"=> {args.arch} k_size={_kernels(model)} classes={args.num_classes} device={ctx.device} "
        f"processes={ctx.world_size} amp={args.amp} channels_last={args.channels_last} compile={args.compile} "
        f"eca_impl={args.eca_impl} data_backend={'synthetic' if args.dummy else args.data_backend}")
    try:
        if args.evaluate:
            return _evaluate_only(runner, model, val_loader, val_set, criterion, numerics, args, ctx, logger, source)
        return train(runner, model, train_set, val_loader, criterion, numerics, args, ctx, logger, checkpoint,
                     run_dir, say)
    finally:
        logger.close()


def _kernels(model) -> str:
    k = getattr(model, "k_size", None)
    if not k or getattr(model, "attention", None) not in ("eca", "eca_ns"):
        return "-"
    return format_ksize(k) if len(k) == 4 else ",".join(map(str, k))


def _evaluate_only(runner, model, val_loader, val_set, criterion, numerics, args, ctx, logger, source) -> int:
    metrics, rows = evaluate(runner, val_loader, criterion, numerics, args, ctx.is_main,
                             collect_predictions=bool(args.predictions))
    if ctx.is_main:
        print(f" * Prec@1 {metrics['top1']:.3f} Prec@5 {metrics['top5']:.3f}")
        print(f"=> {metrics['count']} images, loss {metrics['loss']:.4f}, {metrics['images_per_s']:.0f} img/s")
        if metrics["skipped"]:
            print(f"=> {metrics['skipped']} unreadable images were left out (--skip-corrupt)")
        logger.write_json("eval_results.json", {
            **metrics, "arch": args.arch, "checkpoint": source, "k_size": getattr(model, "k_size", None),
            "num_classes": args.num_classes, "data": args.data})
        if args.predictions:
            write_predictions(args.predictions, rows, val_set)
    return 0


