"""Settling a run's configuration, once, before any work. The sections (sections.py) hold what the user typed
and the recipe's defaults, each checked where it is declared; this module fills in only what is derived:
the automatic numerics and input pipeline, the device, the per-process batch and workers, the seed, the run
folder, and what a checkpoint tells (architecture, kernel sizes, class count). Every problem found here is
a UserError (exit 2) raised before anything is written.
"""
import dataclasses
import os
import random
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Set, Tuple

import torch

from models import WeightsFile, create_model, format_ksize, model_family
from models.weights import CheckpointError

from ..data.dataset_checks import check_dataset
from ..errors import UserError
from ..running.distributed import DistContext, broadcast_object, init_distributed, say
from ..running.files import check_output_dir, check_output_file
from ..running.run_folder import RunFolder, check_run_folder
from ..training.checkpoint import position_of
from .parser import build_parser, declared_defaults, parse_options
from .run_config import RunConfig
from .sections import SECTIONS, TORCHVISION_SCHEDULERS


@dataclass
class Prepared:
    """A run ready to start: its configuration, its processes, the checkpoint it starts from (read once),
    and, on rank 0 of a training run, the run folder it holds."""
    config: RunConfig
    ctx: DistContext
    weights: Optional[WeightsFile]
    explicit: Set[str]
    folder: Optional[RunFolder] = None


def parse_command_line(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str,
                       prog: Optional[str] = None) -> Tuple[RunConfig, Set[str]]:
    """The checked configuration of a command line (before what is derived) and the names the user typed.
    Without DIR (and without --dummy): the built-in demo dataset and its small-image defaults."""
    sections = SECTIONS.values()
    defaults = {**declared_defaults(sections), **recipe}
    parser = build_parser(sections, defaults, description, prog)
    values, explicit = parse_options(parser, argv, defaults)
    builtin_data = values["data"] is None and not values["dummy"]
    if builtin_data:
        values.update({key: value for key, value in builtin.items() if key not in explicit})
    config = RunConfig.from_values(values)
    if builtin_data:
        from ..data.builtin_dataset import ensure_builtin_dataset

        data = str(ensure_builtin_dataset())
        say(f"=> no DIR given: using the built-in demo dataset at {data} (10 classes of shapes, 64 px)",
            file=sys.stderr)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, data=data))
    _note_other_family(config.model.arch, recipe.get("arch"))
    return config, explicit


def _note_other_family(arch: str, recipe_arch: Optional[str]) -> None:
    """One line when the model is of another family than the entry point's recipe (light_main.py -a
    eca_resnet18 trains with the MobileNetV2 recipe's defaults where no flag says otherwise)."""
    if recipe_arch is None:
        return
    family, recipe_family = model_family(arch), model_family(recipe_arch)
    if family.name != recipe_family.name:
        say(f"=> note: {arch} is trained with the {recipe_family.name} recipe's defaults here (epochs, batch, lr, "
            f"schedule); {family.entry_point} has the {family.name} recipe", file=sys.stderr)


def _layer_kernels(arch: str, k_size) -> Optional[list]:
    """The kernel size of every ECA layer `arch` gets from `k_size` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return getattr(create_model(arch, k_size=k_size), "k_size", None)


def _model_identity(config: RunConfig, explicit: Set[str], weights: Optional[WeightsFile]) -> Tuple[str, object]:
    """arch and k_size: as given, else read from the checkpoint's tensors; a given --ksize that disagrees
    with the file is an error naming both."""
    arch, ksize = config.model.arch, config.model.ksize
    if weights is not None and "arch" not in explicit:
        detected = weights.arch
        if detected and detected != arch:
            say(f"=> {weights.path}: tensors match {detected}; using it (pass -a to override)")
            arch = detected
    k_size = model_family(arch).parse_ksize(ksize, arch)
    file_kernels = weights.kernels(arch) if weights is not None else None
    if k_size is not None and file_kernels is not None:
        given, saved = _layer_kernels(arch, k_size), _layer_kernels(arch, file_kernels)
        if given != saved:
            raise CheckpointError(
                f"--ksize {ksize} disagrees with {weights.path}, whose ECA kernels are "
                f"{format_ksize(saved)}: drop --ksize (it is read from the file) or use the matching file")
    if k_size is None and file_kernels is not None:
        k_size = file_kernels
    return arch, k_size


def _class_count(num_classes: Optional[int], weights: Optional[WeightsFile], classes: Optional[list]) -> int:
    if num_classes is None and weights is not None:
        num_classes = weights.num_classes
    if num_classes is None:
        num_classes = len(classes) if classes else 1000
    if classes and len(classes) > num_classes:
        raise UserError(f"the dataset has {len(classes)} classes but the model has {num_classes} outputs: "
                        f"use --num-classes {len(classes)} (or a checkpoint trained on these classes)")
    return num_classes


def _label_names(evaluate: bool, weights: Optional[WeightsFile], classes: Optional[list], num_classes: int):
    """Evaluation with a checkpoint that names its classes: those names, onto which the val folders are
    mapped (a val folder may hold a subset of them). None otherwise."""
    if not evaluate or not classes:
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


def _seed(config: RunConfig, weights: Optional[WeightsFile]) -> int:
    """--seed, else the resumed run's, else a random one drawn by rank 0 and shared (stored, so a resume
    continues with it)."""
    if config.run.seed is not None:
        return config.run.seed
    if config.run.resume and weights is not None:
        saved = weights.checkpoint.get("args", {})
        if isinstance(saved, dict) and saved.get("seed") is not None:
            return int(saved["seed"])
    return broadcast_object(random.SystemRandom().randrange(2 ** 31))


def _numerics(config: RunConfig, device: torch.device, graph_breaking: str):
    """`graph_breaking`: why torch.compile cannot help this run ("" if it can)."""
    numerics, cuda = config.numerics, device.type == "cuda"
    amp, channels_last, compiled = numerics.amp, numerics.channels_last, numerics.compile
    if numerics.official_numerics:
        amp, channels_last, compiled = "none", False, False
    if amp == "auto":
        amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if amp == "fp16" and not cuda:
        raise UserError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or --amp none")
    if compiled is None:
        compiled = cuda and not config.run.evaluate and not graph_breaking
        if cuda and not config.run.evaluate and graph_breaking:
            say(f"=> not compiling: {graph_breaking} (pass --compile to compile anyway)")
    return dataclasses.replace(numerics, device=str(device), amp=amp, compile=compiled,
                               channels_last=cuda if channels_last is None else channels_last,
                               eca_impl=_eca_impl(numerics.eca_impl))


def _graph_breaking(config: RunConfig, data_parallel: bool) -> str:
    """Why torch.compile would not pay off: DataParallel replicates the module every step (a compiled
    DataParallel gives no multi-GPU speed-up) and SyncBatchNorm's collectives break the graph."""
    if data_parallel:
        return "DataParallel (several GPUs without torchrun) gains nothing from it; torchrun gives one process per GPU"
    if config.launch.sync_bn:
        return "--sync-bn's collectives break the compiled graph"
    return ""


def _eca_impl(requested: str) -> str:
    # auto is the reference layer: the fused block end has not yet been measured on a GPU (BENCHMARKS.md says
    # which measurement would make it the default under --compile); it stays available by name.
    return "conv" if requested == "auto" else requested


def _data_backend(config: RunConfig, device: torch.device) -> str:
    """auto: the tensor pipeline on CUDA (uint8 to the GPU), PIL (the official path) on the CPU. The gpu
    pipeline stays opt-in until it has been measured on a GPU (BENCHMARKS.md). Synthetic data: pil."""
    data = config.data
    if data.dummy:
        return "pil"
    if data.data_backend == "auto":
        return "tensor" if device.type == "cuda" else "pil"
    if data.data_backend == "gpu" and device.type != "cuda":
        say("=> --data-backend gpu on a machine without a CUDA device: its device stage decodes on the CPU "
            "(torchvision), which is slower than --data-backend pil or tensor", file=sys.stderr)
    return data.data_backend


def _per_process_batch(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is the global batch and must divide by the {world_size} "
                        f"processes; use a multiple of {world_size}")
    return batch_size // world_size


def _default_workers() -> int:
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(16, (os.cpu_count() or 1) // max(1, per_node)))


def _run_dir(config: RunConfig, arch: str) -> str:
    output = config.output
    return output.output_dir or os.path.join("runs", f"{arch}_{output.action}" if output.action else arch)


def _weights_source(config: RunConfig) -> Tuple[str, str]:
    """(--resume path, --pretrained path), "" for none; --resume auto becomes the run folder's checkpoint
    if it has one (a requeued job runs the same command), else nothing: a fresh start."""
    run = config.run
    resume = run.resume
    if resume == "auto":
        candidate = os.path.join(_run_dir(config, config.model.arch), "checkpoint.pth.tar")
        resume = candidate if os.path.isfile(candidate) else ""
    pretrained = run.pretrained if isinstance(run.pretrained, str) else ""
    return resume, pretrained


def _check_start(config: RunConfig, weights: Optional[WeightsFile], classes: Optional[list],
                 train_images: int) -> None:
    """A resumed run continues the same experiment: the same classes, and for a stop in the middle of an
    epoch the same global batch, seed and images, which fix the rest of the epoch's batches."""
    run = config.run
    if not run.resume or weights is None or run.evaluate:
        return
    saved = weights.checkpoint
    names = saved.get("class_names")
    if names and classes and list(names) != list(classes):
        differ = [f"{a} vs {b}" for a, b in zip(names, classes) if a != b][:2] or [f"{len(names)} vs {len(classes)}"]
        raise CheckpointError(f"{weights.path} was trained on other classes than {config.data.data} holds "
                              f"({', '.join(differ)}): resuming would re-mean its labels; to start a new run from "
                              "its weights use --pretrained")
    step, old = int(saved.get("step", 0)), saved.get("args", {})
    if step and isinstance(old, dict):
        now = {"-b": config.data.batch_size, "--seed": run.seed if run.seed is not None else old.get("seed"),
               "train images": train_images}
        before = {"-b": old.get("batch_size"), "--seed": old.get("seed"), "train images": old.get("train_images")}
        changed = [f"{key} {before[key]} -> {now[key]}" for key in now
                   if before[key] is not None and now[key] != before[key]]
        if changed:
            raise UserError(f"{weights.path} stopped in the middle of epoch {saved.get('epoch')} (step {step}); the "
                            f"rest of that epoch is fixed by -b, --seed and the images, which changed "
                            f"({', '.join(changed)}): resume with the same ones, or restart that epoch with "
                            f"--start-epoch {saved.get('epoch')}")


# Options a resumed run takes from its new command line although the checkpoint was trained with others:
# said in one line each, so a changed value is never a surprise.
_NOTED_ON_RESUME = {"batch_size": "-b", "lr": "--lr", "weight_decay": "--wd", "momentum": "--momentum",
                    "epochs": "--epochs", "opt": "--opt", "lr_schedule": "--lr-schedule"}


def _note_changes(config: RunConfig, weights: Optional[WeightsFile]) -> None:
    if not config.run.resume or weights is None or config.run.evaluate:
        return
    old = weights.checkpoint.get("args")
    if not isinstance(old, dict):
        return
    now = config.as_dict()
    for key, flag in _NOTED_ON_RESUME.items():
        if key in old and old[key] is not None and now.get(key) != old[key]:
            say(f"=> note: resuming with {flag} {now.get(key)} (the checkpoint was trained with {flag} {old[key]})")


def _check_batch(train_images: int, per_process: int, world_size: int) -> None:
    if train_images and train_images // world_size < per_process:
        raise UserError(f"train/ holds {train_images} images, fewer than one batch per process (-b "
                        f"{per_process * world_size} over {world_size} process(es)): lower -b")


def _lr_schedule(config: RunConfig, explicit: Set[str]) -> str:
    """--lr-schedule, or torchvision's --lr-scheduler name for the same choice."""
    schedule = config.schedule
    if schedule.lr_scheduler is None:
        return schedule.lr_schedule
    chosen = TORCHVISION_SCHEDULERS[schedule.lr_scheduler]
    if "lr_schedule" in explicit and schedule.lr_schedule != chosen:
        raise UserError(f"--lr-schedule {schedule.lr_schedule} and --lr-scheduler {schedule.lr_scheduler} disagree: "
                        "give one")
    return chosen


def _read_weights(path: str, config: RunConfig) -> WeightsFile:
    """The checkpoint; for `-e --model-ema`, the moving average it holds."""
    if config.run.evaluate and config.ema.model_ema:
        return WeightsFile.read(path, entry="model_ema")
    return WeightsFile.read(path)


def resolve(config: RunConfig, explicit: Set[str], ctx: DistContext, dataset: Tuple[Optional[list], int]) \
        -> Tuple[RunConfig, Optional[WeightsFile]]:
    """The settled RunConfig of a checked one in this process group, and the checkpoint it starts from.
    `dataset`: the class folders (None for synthetic data) and the number of training images."""
    classes, train_images = dataset
    resume, pretrained = _weights_source(config)
    weights = _read_weights(resume or pretrained, config) if resume or pretrained else None
    arch, k_size = _model_identity(config, explicit, weights)
    run_dir = _run_dir(config, config.model.arch if config.run.resume == "auto" else arch)
    check_outputs(config, run_dir, resume, weights)
    _check_start(config, weights, classes, train_images)
    num_classes = _class_count(config.model.num_classes, weights, classes)
    data_parallel = (ctx.device.type == "cuda" and not ctx.distributed and config.launch.gpu is None
                     and torch.cuda.device_count() > 1)
    numerics = _numerics(config, ctx.device, _graph_breaking(config, data_parallel))
    data = dataclasses.replace(
        config.data, data_backend=_data_backend(config, ctx.device),
        per_process_batch=_per_process_batch(config.data.batch_size, ctx.world_size),
        workers=_default_workers() if config.data.workers is None else config.data.workers,
        skip_corrupt=config.data.skip_corrupt or not config.run.evaluate,  # validation within training: skip, report
        label_names=_label_names(config.run.evaluate, weights, classes, num_classes))
    _check_batch(train_images, data.per_process_batch, ctx.world_size)
    settled = dataclasses.replace(
        config, data=data, numerics=numerics,
        run=dataclasses.replace(config.run, resume=resume, pretrained=pretrained if not resume else "",
                                auto_resume=config.run.resume == "auto",
                                seed=_seed(config, weights), class_names=tuple(classes or ()),
                                train_images=train_images),
        model=dataclasses.replace(config.model, arch=arch, k_size=k_size, num_classes=num_classes),
        schedule=dataclasses.replace(config.schedule, lr_schedule=_lr_schedule(config, explicit)),
        output=dataclasses.replace(config.output, run_dir=run_dir),
        launch=dataclasses.replace(config.launch, processes=ctx.world_size, data_parallel=data_parallel))
    _note_changes(settled, weights)
    return settled, weights


def check_outputs(config: RunConfig, run_dir: str, resume: str, weights: Optional[WeightsFile]) -> None:
    """The output locations, before any work: usable folders, and a training run's folder not another run's."""
    flag = "--output-dir" if config.output.output_dir else "the run folder (--output-dir changes it)"
    check_output_dir(run_dir, flag)
    if config.run.evaluate:
        if config.output.predictions:
            check_output_file(config.output.predictions, "--predictions")
        return
    resume_epoch = position_of(weights.checkpoint, resume).epoch if resume and weights is not None else None
    check_run_folder(run_dir, resume, resume_epoch, auto=config.run.resume == "auto")


def _claim_run_folder(config: RunConfig, ctx: DistContext) -> Optional[RunFolder]:
    """Rank 0 of a training run takes its folder; every rank learns whether it could."""
    if config.run.evaluate:
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


def prepare(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str,
            prog: Optional[str] = None) -> Prepared:
    """Parse and check, start the process group, resolve, take the run folder: everything before any work."""
    config, explicit = parse_command_line(argv, recipe, builtin, description, prog)
    dataset = (None, 0) if config.data.dummy else check_dataset(config.data.data, need_train=not config.run.evaluate)
    ctx = init_distributed(config.launch, use_cuda=torch.cuda.is_available() and not config.numerics.cpu)
    settled, weights = resolve(config, explicit, ctx, dataset)
    return Prepared(settled, ctx, weights, explicit, _claim_run_folder(settled, ctx))
