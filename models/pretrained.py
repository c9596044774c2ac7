"""Reading weights from checkpoint files, including those written by the official ECA-Net code.

Official checkpoints are `torch.save` dicts (`epoch`, `arch`, `state_dict`, `best_prec1`, `optimizer`)
saved from DataParallel, so keys carry a `module.` prefix, tensors may live on CUDA, and `arch` is
not reliable. Files are always read with `weights_only=True`: a checkpoint is untrusted input and
must never run code.
"""
import os
import pickle
from typing import Any, Dict

import torch

# Prefixes added by wrappers: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint dict on the CPU without executing code from the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files; all mean "unusable"
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
            raise CheckpointError(
                f"refusing to load {path!r}: it holds objects other than tensors and plain containers, which "
                "could run code; only weights files are accepted (re-save it with torch.save(state_dict))"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path!r} ({type(exc).__name__}: {first[:160]}); the file is truncated, "
            "corrupt or not a PyTorch checkpoint"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def strip_wrapper_prefixes(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def extract_state_dict(checkpoint: Dict[str, Any], path: str = "<checkpoint>") -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint (official dict, ours, or a bare state_dict), unwrapped."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path!r} contains no model weights (no 'state_dict' entry)")
    return strip_wrapper_prefixes(tensors)


def load_weights(model: torch.nn.Module, path: str) -> Dict[str, Any]:
    """Load `path` into `model` strictly; mismatches name the tensors. Returns the checkpoint dict."""
    checkpoint = read_checkpoint(path)
    state_dict = extract_state_dict(checkpoint, path)
    check_compatible(model, state_dict, path)
    model.load_state_dict(state_dict, strict=True)
    return checkpoint


def check_compatible(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], path: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (file {list(state_dict[k].shape)} vs model {list(expected[k].shape)})"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch in {len(mismatched)} tensors: {', '.join(mismatched[:4])}")
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if problems:
        raise CheckpointError(
            f"checkpoint {path!r} does not fit this model: {'; '.join(problems)}. "
            "Check -a/--arch, --ksize and --num-classes against the file"
        )


def apply_pretrained(model: torch.nn.Module, pretrained) -> torch.nn.Module:
    """Handle the factories' `pretrained` argument: False/None, or a path to a checkpoint file."""
    if pretrained is None or pretrained is False:
        return model
    if pretrained is True:
        raise ValueError(
            "pretrained=True cannot download weights (the released files are on file-sharing sites); "
            "download one and pass its path, e.g. pretrained='eca_resnet50_k3557.pth.tar'"
        )
    load_weights(model, os.fspath(pretrained))
    return model
