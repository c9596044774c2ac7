"""Model registry: every architecture the CLI accepts, by name, with the description of its family.

`-a/--arch` choices come from `list_models()`, so helper functions never leak in as architectures (a
defect of the official CLI, which listed every callable). A family (`ModelFamily`) says, as data, what
the rest of the project needs to know about its models without naming them: the classifier's weight key,
how `--ksize` is read for it, how kernel sizes are read back from a checkpoint's tensors, and the entry
point whose recipe fits it. The weights reader, the argument checks and the entry points read these
descriptions; adding a model family is one module that defines its models and registers them here.
"""
import difflib
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from utils.errors import UserError

from .ksize import KSize, parse_ksize


@dataclass(frozen=True)
class ModelFamily:
    name: str
    classifier_key: str    # the classifier's weight in a state_dict: its first dimension is the class count
    ksize_values: int      # how many kernel sizes `--ksize` gives (one per stage; 1: one for every block)
    ksize_meaning: str     # what `--ksize` means for these models ("takes ..."), for messages and help
    read_kernels: Callable[[str, Dict], object]  # (arch, state_dict) -> the k_size that rebuilds its ECA layers
    entry_point: str       # the script whose recipe trains these models

    def parse_ksize(self, value: KSize, arch: str):
        """`value` in any accepted form (models/ksize.py), checked against this family's count."""
        try:
            return parse_ksize(value, num_stages=self.ksize_values)
        except UserError:
            if self.ksize_values > 1:
                raise  # parse_ksize's message already names the per-stage forms
            raise UserError(f"--ksize {value}: {arch} {self.ksize_meaning}") from None


@dataclass(frozen=True)
class _Entry:
    factory: Callable
    family: ModelFamily
    takes_ksize: bool  # the model has ECA layers, whose kernel sizes k_size sets


_MODELS: Dict[str, _Entry] = {}


def register_model(family: ModelFamily, name: Optional[str] = None, takes_ksize: bool = True) \
        -> Callable[[Callable], Callable]:
    """Decorator: register a factory under `name` (default: its function name) in `family`."""

    def wrap(factory: Callable) -> Callable:
        key = name or factory.__name__
        if key in _MODELS:
            raise RuntimeError(f"model {key!r} registered twice")
        _MODELS[key] = _Entry(factory, family, takes_ksize)
        return factory

    return wrap


def list_models(family: Optional[str] = None) -> List[str]:
    return sorted(n for n, e in _MODELS.items() if family is None or e.family.name == family)


def model_family(name: str) -> ModelFamily:
    check_model_name(name)
    return _MODELS[name].family


def families() -> List[ModelFamily]:
    """Every registered family, once, in registration order."""
    seen: Dict[str, ModelFamily] = {}
    for entry in _MODELS.values():
        seen.setdefault(entry.family.name, entry.family)
    return list(seen.values())


def check_arguments(name: str, k_size, num_classes, pretrained) -> None:
    """The factory arguments every model takes, checked in the words of both interfaces (Python argument,
    command-line flag): wrong types would otherwise build nonsense (num_classes=0) or fail deep inside torch."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise UserError(f"{name}: num_classes (--num-classes) must be a positive whole number of classifier outputs, "
                        f"got {num_classes!r}")
    if not (pretrained is None or isinstance(pretrained, (bool, str, os.PathLike))):
        raise UserError(f"{name}: pretrained (--pretrained) must be False or the path of a checkpoint file, got "
                        f"{pretrained!r}")
    if k_size is not None and not _MODELS[name].takes_ksize:
        raise UserError(f"{name} has no ECA layer, so a kernel size (k_size={k_size!r}, --ksize) does not apply; "
                        "leave it out")


def suggest_models(name: str, n: int = 3) -> List[str]:
    return difflib.get_close_matches(name, list(_MODELS), n=n, cutoff=0.5)


def unknown_model_message(name: str) -> str:
    close = suggest_models(name)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown architecture {name!r}.{hint} Valid: {', '.join(list_models())}"


def check_model_name(name: str) -> None:
    if name not in _MODELS:
        raise UserError(unknown_model_message(name))


def create_model(name: str, **kwargs):
    check_model_name(name)
    return _MODELS[name].factory(**kwargs)


def factory(name: str) -> Callable:
    check_model_name(name)
    return _MODELS[name].factory
