"""Kernel sizes of the ECA 1-D convolution: parsing user input and the paper's ψ(C).

Accepted forms of `k_size` (ResNets have one value per stage, four stages):
  "3557"        one digit per stage (the official CLI's form)
  "3,5,5,7"     comma-separated, allows kernels of two digits
  [3, 5, 5, 7]  a list or tuple
  3 or "3"      one value for every stage
  "adaptive"    ψ(C) per layer from its channel count (paper §3.3, γ=2, b=1)
"""
import math
from typing import List, Sequence, Union

from utils.errors import UserError

ADAPTIVE = "adaptive"
KSize = Union[None, int, str, Sequence[int]]

_FORMS = "e.g. '3557', '3,5,5,7', [3, 5, 5, 7], a single odd int such as 3, or 'adaptive'"


def adaptive_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ψ(C) from the paper: t = int(|log2(C) + b| / γ), rounded up to the next odd number."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _check_values(original, values: List[int], num_stages: int) -> List[int]:
    if len(values) == 1:
        values = values * num_stages
    if len(values) != num_stages:
        raise UserError(
            f"invalid k_size {original!r}: got {len(values)} kernel sizes, expected {num_stages} "
            f"(one per stage) or a single value for all stages; {_FORMS}"
        )
    bad = [k for k in values if k <= 0 or k % 2 == 0]
    if bad:
        raise UserError(
            f"invalid k_size {original!r}: kernel sizes must be odd and positive "
            f"(so the 1-D convolution keeps the channel count), got {bad}; {_FORMS}"
        )
    return values


def parse_ksize(value: KSize, num_stages: int = 4) -> Union[None, str, List[int]]:
    """Normalise any accepted form to None (use the model's default), 'adaptive' or a list of ints."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UserError(f"invalid k_size {value!r}; {_FORMS}")
    if isinstance(value, int):
        return _check_values(value, [value], num_stages)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ADAPTIVE:
            return ADAPTIVE
        try:
            if "," in text:
                values = [int(part) for part in text.split(",")]
            elif text.isdigit():
                values = [int(ch) for ch in text]
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"invalid k_size {value!r}: not a list of integers; {_FORMS}") from None
        return _check_values(value, values, num_stages)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            raise UserError(f"invalid k_size {value!r}: every entry must be an int; {_FORMS}")
        return _check_values(value, list(value), num_stages)
    raise UserError(f"invalid k_size {value!r} of type {type(value).__name__}; {_FORMS}")


def format_ksize(values: Sequence[int]) -> str:
    """Inverse of parse_ksize for lists: '3557' when every kernel is one digit, else '3,5,5,11'."""
    if all(k < 10 for k in values):
        return "".join(str(k) for k in values)
    return ",".join(str(k) for k in values)
