"""The run's configuration: one section per layer (sections.py), settled once by resolve.py before any work,
then only read. `as_dict` flattens it into one dict with one value per option name (`args.json`, the
checkpoints' `args`): the names are unique across sections.
"""
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

from ..errors import UserError
from .sections import (SECTIONS, AugmentSettings, DataSettings, EmaSettings, LaunchSettings, LoopSettings,
                       MixSettings, ModelSettings, NumericsSettings, OptimSettings, OutputSettings, RunSettings,
                       ScheduleSettings)


@dataclass(frozen=True)
class RunConfig:
    run: RunSettings
    model: ModelSettings
    data: DataSettings
    augment: AugmentSettings
    numerics: NumericsSettings
    optim: OptimSettings
    schedule: ScheduleSettings
    loop: LoopSettings
    mix: MixSettings
    ema: EmaSettings
    output: OutputSettings
    launch: LaunchSettings

    def __post_init__(self):
        check_combinations(self)

    @classmethod
    def from_values(cls, values: Dict[str, Any]) -> "RunConfig":
        """Every section built (and so checked) from parsed values."""
        return cls(**{name: section.from_values(values) for name, section in SECTIONS.items()})

    def as_dict(self) -> Dict[str, Any]:
        flat: Dict[str, Any] = {}
        for f in fields(self):
            flat.update(_plain(asdict(getattr(self, f.name))))
        return flat


def check_combinations(config: RunConfig) -> None:
    """The checks that relate options of different sections, each naming both flags."""
    run, loop, schedule = config.run, config.loop, config.schedule
    if schedule.warmup_epochs > loop.epochs:
        raise UserError(f"--warmup-epochs {schedule.warmup_epochs} is longer than --epochs {loop.epochs}: the "
                        "schedule would never leave the warm-up")
    if loop.start_epoch is not None and loop.start_epoch >= loop.epochs and not run.evaluate:
        raise UserError(f"--start-epoch {loop.start_epoch} is not before --epochs {loop.epochs}: nothing to train; "
                        "raise --epochs")
    if config.output.predictions and not run.evaluate:
        raise UserError("--predictions is written by an evaluation: add -e")
    if (config.augment.auto_augment or config.augment.random_erase) and config.data.data_backend == "gpu":
        raise UserError("--auto-augment and --random-erase work on decoded images in the loader workers: use "
                        "--data-backend tensor or pil (the gpu pipeline decodes on the device)")


def _plain(value):
    """JSON- and weights_only-safe values."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _unique_names() -> None:
    seen: Dict[str, str] = {}
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name in seen:
                raise RuntimeError(f"option {f.name!r} is declared in both {seen[f.name]} and {name}")
            seen[f.name] = name


_unique_names()
