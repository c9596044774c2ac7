"""Model registry: every architecture the CLI accepts is registered here by name.

`-a/--arch` choices come from `list_models()`, so helper functions never leak in as
architectures (a defect of the official CLI, which listed every callable).
"""
import difflib
from typing import Callable, Dict, List, Optional

from utils.errors import UserError

_MODELS: Dict[str, Callable] = {}
_FAMILIES: Dict[str, str] = {}


def register_model(family: str) -> Callable[[Callable], Callable]:
    """Decorator: register a factory under its function name, tagged with a family
    ("resnet" or "mobilenet") so entry points can pick the matching recipe."""

    def wrap(factory: Callable) -> Callable:
        name = factory.__name__
        if name in _MODELS:
            raise RuntimeError(f"model {name!r} registered twice")
        _MODELS[name] = factory
        _FAMILIES[name] = family
        return factory

    return wrap


def list_models(family: Optional[str] = None) -> List[str]:
    return sorted(n for n in _MODELS if family is None or _FAMILIES[n] == family)


def model_family(name: str) -> str:
    check_model_name(name)
    return _FAMILIES[name]


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
    return _MODELS[name](**kwargs)
