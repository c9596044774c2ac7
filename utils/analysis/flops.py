"""Params and FLOPs in the units of the official ECA-Net tables.

thop counts multiply-accumulates (MACs) and the official script divides by 1024^n, so the paper's
"3.86G FLOPs" for ECA-ResNet-50 is 4,139,363,328 MACs / 1024^3. We print that format and the exact
decimal counts beside it.
"""
import contextlib
import io
import warnings
from typing import Dict

import torch

from models import create_model

from ..errors import UserError


def format_1024(value: float) -> str:
    """Official format: two decimals over the largest power of 1024 the value exceeds (K, M, G)."""
    for power, unit in ((3, "G"), (2, "M"), (1, "K")):
        if value >= 1024 ** power:
            return f"{value / 1024 ** power:.2f}{unit}"
    return f"{value:.2f}"


def count_params_macs(arch: str, k_size=None, input_size: int = 224, num_classes: int = 1000) -> Dict[str, int]:
    """Exact parameter count and thop MACs of `arch` on one input_size x input_size RGB image."""
    try:
        from thop import profile  # imported lazily: only this tool needs thop
    except ImportError:
        raise UserError("counting FLOPs needs thop: pip install thop (see requirements.txt)") from None

    model = create_model(arch, k_size=k_size, num_classes=num_classes).eval()
    n_params = sum(p.numel() for p in model.parameters())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        # thop prints a line per module type it has no rule for (Sigmoid, pools): noise here.
        warnings.simplefilter("ignore")
        macs, _ = profile(model, inputs=(torch.randn(1, 3, input_size, input_size),), verbose=False)
    return {"params": int(n_params), "macs": int(macs)}
