"""run(): the one driver behind main.py and light_main.py.

Order: settle the configuration (utils/config: every check, one-line errors, exit 2, before any work),
set the process-wide switches, build the input pipeline, model and training state, then evaluate or train.
Errors become exit codes by their base class (running/entry.py). Only rank 0 prints and writes. A training
run's status.json says at every moment what the run is doing: "running" from the start (with the pid and
host, so a run that was killed can be told from one that is alive), then how it ended.
"""
import csv
import os
import shlex
import socket
import sys
import time
from typing import Dict, Optional, Sequence

from ..config.resolve import Prepared, prepare
from ..config.run_config import RunConfig
from ..data import PipelineRun, build_pipeline
from ..errors import RunError, UserError, one_line
from ..training import checkpoint as ckpt
from ..training.engine import EvalOptions, evaluate
from ..training.model_setup import build_model, wrap_model
from ..training.numerics import Numerics, set_process_switches
from ..training.state import build_train_state, make_criterion
from ..training.trainer import Outcome, Trainer, seed_everything, seed_initial_weights
from .distributed import DistContext, cleanup, say
from .entry import run_cli
from .files import OutputWriteError, atomic_write, write_json
from .preemption import StopRequest
from .run_folder import STATUS_NAME
from .run_logger import RunLogger


def run(argv: Optional[Sequence[str]], recipe: Dict, builtin: Dict, description: str) -> int:
    """Parse `argv` with the entry point's recipe, then evaluate or train; returns the exit code."""
    return run_cli(lambda args: _run_guarded(args, recipe, builtin, description), argv)


def _run_guarded(argv, recipe: Dict, builtin: Dict, description: str) -> int:
    prepared = None
    try:
        prepared = prepare(argv, recipe, builtin, description)
        return _run(prepared)
    except (UserError, RunError) as exc:
        if isinstance(exc, RunError) and prepared is not None:
            _record(prepared, Outcome("failed", one_line(exc)))
        raise
    finally:
        if prepared is not None and prepared.folder is not None:
            prepared.folder.release()
        cleanup()


def pipeline_run(config: RunConfig, ctx: DistContext) -> PipelineRun:
    return PipelineRun(seed=config.run.seed, device=ctx.device, channels_last=config.numerics.channels_last,
                       num_classes=config.model.num_classes, rank=ctx.rank, world_size=ctx.world_size)


def _model_line(config: RunConfig, model) -> str:
    k = getattr(model, "k_size", None)
    kernels = "-"
    if k and getattr(model, "attention", None) in ("eca", "eca_ns"):
        kernels = "".join(map(str, k)) if len(k) == 4 and all(x < 10 for x in k) else ",".join(map(str, k))
    numerics = config.numerics
    return (f"=> {config.model.arch} k_size={kernels} classes={config.model.num_classes} device={numerics.device} "
            f"processes={config.launch.processes} amp={numerics.amp} channels_last={numerics.channels_last} "
            f"compile={numerics.compile} eca_impl={numerics.eca_impl} "
            f"data_backend={'synthetic' if config.data.dummy else config.data.data_backend}")


def _config_line(config: RunConfig) -> str:
    """The whole resolved configuration on one line (also in args.json): what the run does, with every
    default and automatic choice spelled out."""
    return "=> config: " + " ".join(f"{key}={value}" for key, value in sorted(config.as_dict().items()))


def _run(prepared: Prepared) -> int:
    config = prepared.config
    if config.run.evaluate:
        set_process_switches(config.numerics)
        pipeline = build_pipeline(config.data, config.augment, pipeline_run(config, prepared.ctx), need_train=False)
        seed_everything(config.run.seed, 0)
        return _evaluate_only(prepared, pipeline)
    # From here on a stop signal is a request to stop at a step boundary, also while the loaders and the
    # model are still being built (one rank killed there would leave the others a connection error).
    stop = StopRequest().install()
    try:
        _record(prepared, Outcome("running", f"training since {_now()} (pid {os.getpid()} on "
                                             f"{socket.gethostname()})"))
        try:
            return _train(prepared, stop)
        except UserError as exc:  # found once the data is loaded: the run did not start after all
            _record(prepared, Outcome("failed", one_line(exc)))
            raise
    finally:
        stop.uninstall()


def _train(prepared: Prepared, stop: StopRequest) -> int:
    config, ctx = prepared.config, prepared.ctx
    set_process_switches(config.numerics)
    pipeline = build_pipeline(config.data, config.augment, pipeline_run(config, ctx), need_train=True)
    seed_initial_weights(config.run.seed)
    start = ckpt.start_position(prepared.weights.checkpoint if config.run.resume and prepared.weights else None,
                                config.loop.start_epoch, config.run.resume)
    if start.step >= max(1, pipeline.steps_per_epoch):
        raise UserError(f"{config.run.resume} stopped at step {start.step} of epoch {start.epoch}, but an epoch has "
                        f"{pipeline.steps_per_epoch} steps here: it belongs to another dataset or batch size; restart "
                        f"that epoch with --start-epoch {start.epoch}")
    if start.epoch >= config.loop.epochs:
        outcome = Outcome("finished", f"nothing to train: {config.run.resume} has finished {start.epoch} epochs "
                                      f"(--epochs {config.loop.epochs}); raise --epochs to train longer")
        say(f"=> {outcome.message}")
        _record(prepared, outcome)
        return 0
    state = build_train_state(config, ctx, prepared.weights, pipeline.steps_per_epoch,
                              start=start.epoch * pipeline.steps_per_epoch + start.step)
    logger = RunLogger(config.output.run_dir, ctx.is_main, config.output.tensorboard)
    say(_model_line(config, state.model))
    say(_config_line(config))
    try:
        if config.run.resume:
            where = f"epoch {start.epoch}" + (f" step {start.step}" if start.step else "")
            say(f"=> resumed {config.run.resume}: {where}, best Prec@1 {start.best:.3f}")
        elif config.run.auto_resume:
            say(f"=> --resume auto: no checkpoint in {config.output.run_dir} yet; starting a new run")
        logger.write_json("args.json", config.as_dict())
        trainer = Trainer(state, pipeline, config, ctx, logger)
        path = os.path.join(config.output.run_dir, ckpt.CHECKPOINT_NAME)
        outcome = trainer.fit(start, stop, resume_command(path))
    finally:
        logger.close()
    _record(prepared, outcome)
    return 0


def _now() -> str:
    """Local time with its UTC offset (ISO 8601), so times from machines in other zones compare."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _record(prepared: Prepared, outcome: Outcome) -> None:
    """status.json in the run folder (rank 0 of a training run): what a requeue script reads
    (scripts/run_status.py). A failure to write it must not hide the error being recorded."""
    if prepared.folder is None:
        return
    status = {"state": outcome.state, "message": outcome.message, "time": _now(), "pid": os.getpid(),
              "host": socket.gethostname()}
    for key in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT"):  # which attempt of a requeued job wrote it
        if key in os.environ:
            status[key.lower()] = os.environ[key]
    try:
        write_json(os.path.join(prepared.config.output.run_dir, STATUS_NAME), status)
    except OutputWriteError:
        if outcome.state != "failed":
            raise


def resume_command(path: str) -> str:
    """This run's command line with --resume pointing at `path` (an earlier --resume replaced), quoted for
    the shell so that it can be pasted as it is."""
    out, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if arg.startswith("--resume="):
            continue
        out.append(arg)
    launcher = ["torchrun", "--nproc_per_node=N"] if "WORLD_SIZE" in os.environ else ["python"]
    return shlex.join([*launcher, sys.argv[0], "--resume", path, *out])


def _evaluate_only(prepared: Prepared, pipeline) -> int:
    config, ctx = prepared.config, prepared.ctx
    model = build_model(config.model, prepared.weights, config.numerics.eca_impl)
    numerics = Numerics(config.numerics)
    criterion = make_criterion(config.loop, ctx.device)
    say(_model_line(config, model))
    say(_config_line(config))
    runner, evaluator = wrap_model(model, ctx, config.numerics, config.launch, training=False)
    options = EvalOptions(show_progress=config.loop.progress, collect_predictions=bool(config.output.predictions),
                          fixed_batch=config.data.per_process_batch if config.numerics.compile else None)
    metrics, rows = evaluate(runner if config.numerics.compile else evaluator, pipeline, numerics, criterion, options)
    say(f" * Prec@1 {metrics['top1']:.3f} Prec@5 {metrics['top5']:.3f}")
    say(f"=> {metrics['count']} images, loss {metrics['loss']:.4f}, {metrics['images_per_s']:.0f} img/s")
    if metrics["skipped"]:
        say(f"=> {metrics['skipped']} unreadable images were left out (--skip-corrupt)")
    if ctx.is_main:
        logger = RunLogger(config.output.run_dir, True, tensorboard=False)
        logger.write_json("eval_results.json", {
            **metrics, "arch": config.model.arch, "checkpoint": config.run.weights_source,
            "k_size": getattr(model, "k_size", None), "num_classes": config.model.num_classes,
            "data": config.data.data})
        if config.output.predictions:
            write_predictions(config.output.predictions, rows, pipeline.relative_paths())
    return 0


def write_predictions(path: str, rows, paths) -> None:
    """One CSV row per image: path relative to val/, target, top-5 class indices."""
    width = len(rows[0][2]) if rows else 5
    with atomic_write(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "target"] + [f"top{k + 1}" for k in range(width)])
        for index, target, top in rows:
            writer.writerow([paths[index] if paths else str(index), target, *top])
