"""The run's configuration: settled once, before any work, by utils/resolve.py, then only read.

Each section holds what one layer uses, under the name of the command-line option it comes from, so
the sections flatten into one dict (`args.json`, the checkpoints' `args`) with one value per name.
"""
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

from .data import DataSettings


@dataclass(frozen=True)
class ModelSettings:
    arch: str
    k_size: Any            # as models.create_model takes it: a list per stage, one int, "adaptive" or None
    num_classes: int
    eca_impl: str          # conv, shifted or fused (resolved)


@dataclass(frozen=True)
class NumericsSettings:
    device: str            # "cpu" or "cuda:N"
    amp: str               # none, bf16 or fp16 (resolved)
    channels_last: bool
    compile: bool
    compile_backend: str
    deterministic: bool


@dataclass(frozen=True)
class OptimSettings:
    opt: str               # sgd, sgd_nesterov or adamw
    lr: float              # for the global batch
    momentum: float
    weight_decay: float
    norm_weight_decay: Optional[float]  # normalisation layers' parameters (None: weight_decay)
    clip_grad_norm: Optional[float]


@dataclass(frozen=True)
class ScheduleSettings:
    lr_schedule: str
    lr: float
    lr_step: int
    lr_gamma: float
    warmup_epochs: float
    epochs: int
    lr_warmup_decay: float = 0.0  # the warm-up starts at this fraction of lr


@dataclass(frozen=True)
class MixSettings:
    """Batch-level MixUp / CutMix (0: off)."""
    mixup_alpha: float
    cutmix_alpha: float

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


@dataclass(frozen=True)
class EmaSettings:
    model_ema: bool
    model_ema_steps: int
    model_ema_decay: float  # as given; adjusted to the batch, interval and epochs where the average is built


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    print_freq: int
    skip_nonfinite: int
    max_skipped: int
    label_smoothing: float
    progress: bool         # tqdm bars (a terminal); plain lines otherwise


@dataclass(frozen=True)
class OutputSettings:
    run_dir: str
    tensorboard: bool
    log_attention: bool
    predictions: Optional[str]


@dataclass(frozen=True)
class LaunchSettings:
    processes: int
    sync_bn: bool
    data_parallel: bool    # several GPUs without a launcher: the official DataParallel


@dataclass(frozen=True)
class RunConfig:
    evaluate: bool
    resume: str            # checkpoint to continue from ("" for none)
    pretrained: str        # checkpoint whose weights start a new run ("" for none)
    seed: int
    start_epoch: Optional[int]
    class_names: Tuple[str, ...]
    train_images: int      # checked on a mid-epoch resume: the rest of the epoch depends on it
    model: ModelSettings
    data: DataSettings
    numerics: NumericsSettings
    optim: OptimSettings
    schedule: ScheduleSettings
    mix: MixSettings
    ema: EmaSettings
    loop: LoopSettings
    output: OutputSettings
    launch: LaunchSettings
    given: Mapping[str, Any]  # the parsed command line, for the record

    @property
    def weights_source(self) -> str:
        return self.resume or self.pretrained

    def as_dict(self) -> Dict[str, Any]:
        """One flat dict: the command line as given, overridden by every resolved value."""
        flat: Dict[str, Any] = dict(self.given)
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "given":
                continue
            if hasattr(value, "__dataclass_fields__"):
                flat.update(_plain(asdict(value)))
            else:
                flat[field.name] = _plain(value)
        return flat


def _plain(value):
    """JSON- and weights_only-safe values."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))
