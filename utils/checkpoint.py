"""Checkpoints: self-describing, written atomically, readable by the official tools.

A checkpoint keeps the official keys (`epoch` = next epoch to run, `arch`, `state_dict`, `best_prec1`,
`optimizer`) and adds what an exact resume needs: schedule, scaler, kernel sizes, num_classes,
class names, the arguments and RNG states. `state_dict` keys carry no wrapper prefix; official
files with `module.` load too (models/pretrained.py strips it).
"""
import os
import random
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import torch

from models import create_model, list_models
from models.pretrained import extract_state_dict, read_checkpoint

CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_NAME = "model_best.pth.tar"


def atomic_save(obj: Dict[str, Any], path: str) -> None:
    """torch.save into a temporary file beside `path`, fsync, then rename over it: a crash or a full
    disk at any moment leaves the previous file intact."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth.tar", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_copy(src: str, dst: str) -> None:
    directory = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth.tar", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def eca_kernel_sizes(state_dict: Dict[str, torch.Tensor]) -> List[int]:
    """Kernel size of every ECA layer, in model order (ECA weights are [1, 1, k])."""
    return [int(v.shape[-1]) for k, v in state_dict.items() if k.endswith("eca.conv.weight")]


def resnet_stage_kernels(state_dict: Dict[str, torch.Tensor]) -> Optional[List[int]]:
    """One ECA kernel size per ResNet stage, read from `layerS.0.eca.conv.weight`; None if absent."""
    kernels = []
    for stage in range(1, 5):
        weight = state_dict.get(f"layer{stage}.0.eca.conv.weight")
        if weight is None:
            return None
        kernels.append(int(weight.shape[-1]))
    return kernels


def classifier_outputs(state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
    for key in ("fc.weight", "classifier.1.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return None


def _key_shapes(model: torch.nn.Module) -> Dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The registered architecture whose key names equal the file's (the `arch` field of official
    checkpoints is unreliable). Models are built on the meta device: no memory, no init cost."""
    keys = set(state_dict)
    kernels = resnet_stage_kernels(state_dict)
    num_classes = classifier_outputs(state_dict) or 1000
    for name in list_models():
        with torch.device("meta"):
            try:
                model = create_model(name, num_classes=num_classes, k_size=kernels if name.startswith("eca_res") else None)
            except ValueError:
                continue
        if set(model.state_dict()) == keys:
            return name
    return None


def load_for_model(path: str):
    """Read a checkpoint and its unwrapped state_dict; errors name the file."""
    checkpoint = read_checkpoint(path)
    return checkpoint, extract_state_dict(checkpoint, path)
