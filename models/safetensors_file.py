"""Reading `.safetensors` weights files (a JSON header and raw tensor bytes: reading one cannot run code) as
the checkpoint dict models/weights.py reads. The file's layout and metadata keys are described in
utils/deploy/safetensors_io.py, which writes such files and converts them back to the official dict.

The `safetensors` package is optional: imported inside the functions here.
"""
import json
import os
import re
import struct
from typing import Any, Dict, List, Optional

import torch

from utils.errors import CheckpointError

from .registry import create_model, list_models

SUFFIX = ".safetensors"
INSTALL = "pip install -r requirements-export.txt"


def require_safetensors(purpose: str):
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        raise CheckpointError(f"{purpose} needs the safetensors package, which is not installed: {INSTALL}") from None
    return safetensors


def is_safetensors(path: str) -> bool:
    """By extension, or by content: an 8-byte little-endian header length that fits the file, then '{'.
    (torch.save writes a zip archive, 'PK...', or a pickle, 0x80.)"""
    if str(path).lower().endswith(SUFFIX):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


# ------------------------------------------------------------------------------------------- reading


def read_safetensors(path: str) -> Dict[str, Any]:
    """A `.safetensors` file as the checkpoint dict models/weights.py reads: its tensors under `state_dict`,
    its metadata as the checkpoint fields they stand for."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist; check the path")
    require_safetensors(f"reading {path}")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, header JSON errors: all mean "unusable"
        text = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"{path!r} is not a readable .safetensors file ({type(exc).__name__}: {text}); "
                                "it may be truncated or corrupt") from None
    tensors = _in_model_order(tensors, metadata.get("arch"))
    checkpoint: Dict[str, Any] = {"state_dict": tensors, "format": "safetensors", "metadata": metadata}
    if metadata.get("arch"):
        checkpoint["arch"] = metadata["arch"]
    for key, kind in (("epoch", int), ("num_classes", int), ("best_prec1", float)):
        if metadata.get(key):
            try:
                checkpoint[key] = kind(metadata[key])
            except ValueError:
                raise CheckpointError(f"{path}: metadata {key}={metadata[key]!r} is not a number") from None
    if metadata.get("class_names"):
        names = metadata_json(metadata["class_names"], path, "class_names")
        if isinstance(names, list):
            checkpoint["class_names"] = [str(n) for n in names]
    return checkpoint


def _natural(key: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key)]


def _in_model_order(tensors: Dict[str, torch.Tensor], arch: Optional[str]) -> Dict[str, torch.Tensor]:
    """The tensors in the order of the model's state_dict, as a checkpoint holds them (safetensors lists keys
    sorted by name, `features.10` before `features.2`; readers such as MobileNetV2's kernel reader go by model
    order). Key names do not depend on kernel sizes or class count, so the default model gives the order;
    unknown names follow in natural order (numbers compared as numbers)."""
    order: List[str] = []
    if arch:
        if arch in list_models():
            with torch.device("meta"):
                order = [key for key in create_model(arch).state_dict() if key in tensors]
    rest = sorted((key for key in tensors if key not in set(order)), key=_natural)
    return {key: tensors[key] for key in [*order, *rest]}


def metadata_json(text: str, path: str, key: str):
    try:
        return json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path}: metadata {key} is not valid JSON") from None
