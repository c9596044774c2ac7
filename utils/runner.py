"""run(): the one driver behind main.py and light_main.py.

Order: settle the configuration (utils/resolve.py: every check, one-line errors, exit 2, before any
work), set the process-wide switches, build data, model and training state, then evaluate or train.
Errors are mapped to exit codes by their base class (utils/errors.py). Only rank 0 prints and writes.
"""
import csv
import os
import sys
import time
from typing import Dict, Optional, Sequence

from . import checkpoint as ckpt
from .config import RunConfig
from .data import Data, build_data, relative_paths
from .distributed import cleanup, process_rank, say
from .engine import EvalOptions, evaluate
from .errors import RunError, UserError, one_line
from .files import OutputWriteError, atomic_write, write_json
from .model_setup import build_model, wrap_model
from .numerics import Numerics, set_process_switches
from .preemption import StopRequest
from .resolve import Prepared, prepare
from .run_folder import STATUS_NAME
from .run_logger import RunLogger
from .trainer import Outcome, fit, seed_everything
from .training_state import build_train_state, make_criterion


def run(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str) -> int:
    prog = os.path.basename(sys.argv[0]) or "main.py"
    prepared = None
    try:
        prepared = prepare(argv, recipe, builtin, description)
        return _run(prepared)
    except (UserError, RunError) as exc:
        if isinstance(exc, RunError) and prepared is not None:
            _record(prepared, Outcome("failed", one_line(exc)))
        # A user error is the same on every rank: one line from the first. A run error can be one rank's.
        rank = process_rank()
        if rank == 0:
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        elif isinstance(exc, RunError):
            print(f"[rank {rank}] {prog}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    finally:
        if prepared is not None and prepared.folder is not None:
            prepared.folder.release()
        cleanup()


def _model_line(config: RunConfig, model) -> str:
    k = getattr(model, "k_size", None)
    kernels = "-"
    if k and getattr(model, "attention", None) in ("eca", "eca_ns"):
        kernels = "".join(map(str, k)) if len(k) == 4 and all(x < 10 for x in k) else ",".join(map(str, k))
    numerics = config.numerics
    return (f"=> {config.model.arch} k_size={kernels} classes={config.model.num_classes} device={numerics.device} "
            f"processes={config.launch.processes} amp={numerics.amp} channels_last={numerics.channels_last} "
            f"compile={numerics.compile} eca_impl={config.model.eca_impl} "
            f"data_backend={'synthetic' if config.data.data is None else config.data.data_backend}")


def _config_line(config: RunConfig) -> str:
    """The whole resolved configuration on one line (also in args.json): what the run does, with every
    default and automatic choice spelled out."""
    return "=> config: " + " ".join(f"{key}={value}" for key, value in sorted(config.as_dict().items()))


def _run(prepared: Prepared) -> int:
    config, ctx = prepared.config, prepared.ctx
    if config.evaluate:
        set_process_switches(config.numerics)
        data = build_data(config.data, ctx, need_train=False)
        seed_everything(config.seed, 0)
        return _evaluate_only(prepared, data)
    # From here on a stop signal is a request to stop at a step boundary, also while the loaders and the
    # model are still being built (one rank killed there would leave the others a connection error).
    stop = StopRequest().install()
    try:
        return _train(prepared, stop)
    finally:
        stop.uninstall()


def _train(prepared: Prepared, stop: StopRequest) -> int:
    config, ctx = prepared.config, prepared.ctx
    set_process_switches(config.numerics)
    data = build_data(config.data, ctx, need_train=True)
    seed_everything(config.seed, 0)
    start = _start_position(prepared)
    if start.epoch >= config.loop.epochs:
        outcome = Outcome("finished", f"nothing to train: {config.resume} has finished {start.epoch} epochs "
                                      f"(--epochs {config.loop.epochs}); raise --epochs to train longer")
        say(f"=> {outcome.message}")
        _record(prepared, outcome)
        return 0
    state = build_train_state(config, ctx, prepared.weights, data.steps_per_epoch,
                              start=start.epoch * data.steps_per_epoch + start.step)
    logger = RunLogger(config.output.run_dir, ctx.is_main, config.output.tensorboard)
    say(_model_line(config, state.model))
    say(_config_line(config))
    try:
        if config.resume:
            where = f"epoch {start.epoch}" + (f" step {start.step}" if start.step else "")
            say(f"=> resumed {config.resume}: {where}, best Prec@1 {start.best:.3f}")
        elif config.given.get("resume") == "auto":
            say(f"=> --resume auto: no checkpoint in {config.output.run_dir} yet; starting a new run")
        logger.write_json("args.json", config.as_dict())
        outcome = fit(state, data, config, ctx, logger, start, stop)
    finally:
        logger.close()
    _record(prepared, outcome)
    return 0


def _record(prepared: Prepared, outcome: Outcome) -> None:
    """status.json in the run folder (rank 0 of a training run): what a requeue script reads
    (scripts/run_status.py). A failure to write it must not hide the error being recorded."""
    if prepared.folder is None:
        return
    status = {"state": outcome.state, "message": outcome.message, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        write_json(os.path.join(prepared.config.output.run_dir, STATUS_NAME), status)
    except OutputWriteError:
        if outcome.state != "failed":
            raise


def _start_position(prepared: Prepared) -> ckpt.Position:
    config = prepared.config
    position = ckpt.Position()
    if config.resume and prepared.weights is not None:
        position = ckpt.position_of(prepared.weights.checkpoint)
    if config.start_epoch is not None:
        position = ckpt.Position(config.start_epoch, 0, position.best)
    return position


def _evaluate_only(prepared: Prepared, data: Data) -> int:
    config, ctx = prepared.config, prepared.ctx
    model = build_model(config.model, prepared.weights)
    numerics = Numerics(config.numerics)
    criterion = make_criterion(config.loop, ctx.device)
    say(_model_line(config, model))
    say(_config_line(config))
    runner, evaluator = wrap_model(model, ctx, config.numerics, config.launch, training=False)
    options = EvalOptions(show_progress=config.loop.progress, collect_predictions=bool(config.output.predictions),
                          fixed_batch=config.data.per_process_batch if config.numerics.compile else None)
    metrics, rows = evaluate(runner if config.numerics.compile else evaluator, data.val_loader, data.stage, numerics,
                             criterion, options)
    say(f" * Prec@1 {metrics['top1']:.3f} Prec@5 {metrics['top5']:.3f}")
    say(f"=> {metrics['count']} images, loss {metrics['loss']:.4f}, {metrics['images_per_s']:.0f} img/s")
    if metrics["skipped"]:
        say(f"=> {metrics['skipped']} unreadable images were left out (--skip-corrupt)")
    if ctx.is_main:
        logger = RunLogger(config.output.run_dir, True, tensorboard=False)
        logger.write_json("eval_results.json", {
            **metrics, "arch": config.model.arch, "checkpoint": config.weights_source,
            "k_size": getattr(model, "k_size", None), "num_classes": config.model.num_classes,
            "data": config.data.data})
        if config.output.predictions:
            write_predictions(config.output.predictions, rows, data.val_set)
    return 0


def write_predictions(path: str, rows, val_set) -> None:
    """One CSV row per image: path relative to val/, target, top-5 class indices."""
    paths = relative_paths(val_set)
    width = len(rows[0][2]) if rows else 5
    with atomic_write(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "target"] + [f"top{k + 1}" for k in range(width)])
        for index, target, top in rows:
            writer.writerow([paths[index] if paths else str(index), target, *top])
