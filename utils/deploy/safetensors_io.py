"""Checkpoints as `.safetensors`, and back to the official `.pth.tar` dict.

A `.safetensors` file is a JSON header and raw tensor bytes: reading it cannot run code and needs no
pickle, so it is the portable form of a model's weights (other frameworks, hubs, memory-mapped loading).
The file holds the model's tensors with wrapper prefixes (`module.`) stripped, and string metadata:

    format          "eca-net-weights"
    format_version  "1"
    arch            the registered architecture, read from the tensors (a checkpoint's label breaks ties)
    k_size          the ECA kernel sizes as the family reads them back: "3,5,5,7" (ResNets: per stage),
                    "3" or "adaptive" (MobileNetV2: every block); "" when the model has no ECA layer or
                    keeps its released kernels (MobileNetV2's rule)
    num_classes     the classifier's outputs
    epoch, best_prec1, class_names (JSON list), optimizer_param_groups (JSON): when the source has them

`models.weights.WeightsFile.read` reads these files like checkpoints (so `-e --resume`, `--pretrained`,
torch.hub's `pretrained=`, scripts/export.py and the detection backbones take them). Converting back
writes the dict the official code saves and loads: `epoch`, `arch`, `state_dict` (keys with `module.`, as
saved from DataParallel), `best_prec1`, `optimizer`. The optimizer's momentum buffers are not weights and
are not kept; `optimizer` is an SGD state without them (the source's hyperparameters when it had one SGD
group, else the official recipe's), which the official `optimizer.load_state_dict(checkpoint['optimizer'])`
of `-e --resume` accepts.

The `safetensors` package is optional: imported inside the functions here.
"""
import json
import math
from typing import Any, Dict, List, Optional

import torch

from models.safetensors_file import SUFFIX, is_safetensors, metadata_json, require_safetensors

from ..errors import CheckpointError, UserError

FORMAT = "eca-net-weights"
FORMAT_VERSION = "1"
OFFICIAL_PREFIX = "module."
# The official recipes' SGD hyperparameters (main.py and light_main.py), for files that bring none.
OFFICIAL_SGD = {"resnet": dict(lr=0.1, momentum=0.9, weight_decay=1e-4),
                "mobilenet": dict(lr=0.045, momentum=0.9, weight_decay=4e-5)}


# -------------------------------------------------------------------------------------------- writing


def format_kernels(kernels) -> str:
    if kernels is None:
        return ""
    if isinstance(kernels, (list, tuple)):
        return ",".join(str(int(k)) for k in kernels)
    return str(kernels)


def _number(value) -> Optional[float]:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sgd_groups(checkpoint: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The source optimizer's parameter groups without its state (JSON), when it was SGD with one group."""
    optimizer = checkpoint.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
        return None
    groups = optimizer["param_groups"]
    if len(groups) != 1 or not isinstance(groups[0], dict) or "momentum" not in groups[0]:
        return None
    try:
        return json.loads(json.dumps(groups))
    except (TypeError, ValueError):
        return None


def metadata_for(checkpoint: Dict[str, Any], state_dict: Dict[str, torch.Tensor], arch: str) -> Dict[str, str]:
    from models.weights import classifier_outputs, kernels_for

    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch,
                "k_size": format_kernels(kernels_for(arch, state_dict)),
                "num_classes": str(classifier_outputs(state_dict) or "")}
    epoch = checkpoint.get("epoch")
    if isinstance(epoch, torch.Tensor) and epoch.numel() == 1:
        epoch = epoch.item()
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        metadata["epoch"] = str(epoch)
    best = _number(checkpoint.get("best_prec1"))
    if best is not None and math.isfinite(best):
        metadata["best_prec1"] = repr(best)
    names = checkpoint.get("class_names")
    if isinstance(names, (list, tuple)) and names:
        metadata["class_names"] = json.dumps([str(n) for n in names])
    groups = _sgd_groups(checkpoint)
    if groups is not None:
        metadata["optimizer_param_groups"] = json.dumps(groups)
    return metadata


def _unshared(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous tensors that own their memory: safetensors refuses tensors sharing storage."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    pointers = [v.untyped_storage().data_ptr() for v in tensors.values() if v.numel()]
    if len(set(pointers)) < len(pointers):
        tensors = {k: v.clone() for k, v in tensors.items()}
    return tensors


def _arch_of(weights, arch: Optional[str]) -> str:
    from models import create_model  # noqa: F401  (registers the models)

    arch = arch or weights.arch
    if arch is None:
        raise CheckpointError(f"{weights.path}: its tensors match no registered model; pass -a ARCH")
    return arch


def to_safetensors(source: str, out: str, arch: Optional[str] = None) -> Dict[str, str]:
    """Write the weights of checkpoint `source` (official dict, ours, bare state_dict) to `out`; returns the
    metadata written."""
    from models import WeightsFile

    from ..running.files import atomic_write

    require_safetensors(f"writing {out}")
    from safetensors.torch import save

    weights = WeightsFile.read(source)
    arch = _arch_of(weights, arch)
    _check_fits(arch, weights)
    metadata = metadata_for(weights.checkpoint, weights.state_dict, arch)
    data = save(_unshared(weights.state_dict), metadata=metadata)
    with atomic_write(out) as f:
        f.write(data)
    return metadata


def _check_fits(arch: str, weights) -> None:
    """The tensors must be a whole `arch` model (no file whose metadata would describe something else)."""
    from models import create_model
    from models.weights import check_compatible

    with torch.device("meta"):
        model = create_model(arch, k_size=weights.kernels(arch), num_classes=weights.num_classes or 1000)
    check_compatible(model, weights.state_dict, weights.path)


def official_optimizer(arch: str, weights, groups: Optional[List[Dict[str, Any]]]) -> Dict[str, Any]:
    """An SGD state dict without momentum buffers for the DataParallel model of `arch`: what the official
    loader's `optimizer.load_state_dict` accepts (one group holding every parameter, in model order)."""
    from models import create_model, model_family

    with torch.device("meta"):
        model = create_model(arch, k_size=weights.kernels(arch), num_classes=weights.num_classes or 1000)
    count = len(list(model.parameters()))
    if groups and len(groups[0].get("params", [])) == count:
        return {"state": {}, "param_groups": groups}
    fresh = torch.optim.SGD(model.parameters(), **OFFICIAL_SGD.get(model_family(arch).name, OFFICIAL_SGD["resnet"]))
    return fresh.state_dict()


def to_official(source: str, out: str, arch: Optional[str] = None) -> Dict[str, Any]:
    """Write the official `.pth.tar` dict of the `.safetensors` file `source` to `out`; returns it."""
    from models import WeightsFile

    from ..running.files import atomic_write

    weights = WeightsFile.read(source)
    arch = _arch_of(weights, arch)
    _check_fits(arch, weights)
    metadata = weights.checkpoint.get("metadata", {})
    groups = metadata_json(metadata["optimizer_param_groups"], source, "optimizer_param_groups") \
        if metadata.get("optimizer_param_groups") else None
    checkpoint = {
        "epoch": int(weights.checkpoint.get("epoch", 0)),
        "arch": arch,
        "state_dict": {OFFICIAL_PREFIX + key: value for key, value in weights.state_dict.items()},
        "best_prec1": float(weights.checkpoint.get("best_prec1", 0.0)),
        "optimizer": official_optimizer(arch, weights, groups),
    }
    with atomic_write(out) as f:
        torch.save(checkpoint, f)
    return checkpoint


def convert(source: str, out: str, arch: Optional[str] = None) -> str:
    """`.safetensors` -> official `.pth.tar`, anything else -> `.safetensors`; returns the direction."""
    if is_safetensors(source):
        if str(out).lower().endswith(SUFFIX):
            raise UserError(f"{source} is already a .safetensors file: converting it writes the official .pth.tar "
                            f"dict, so give OUT a .pth.tar name")
        to_official(source, out, arch)
        return "official"
    if not str(out).lower().endswith(SUFFIX):
        raise UserError(f"OUT {out}: a checkpoint converts to .safetensors, so OUT must end in {SUFFIX}")
    to_safetensors(source, out, arch)
    return "safetensors"
