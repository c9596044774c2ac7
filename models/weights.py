"""Model weights in checkpoint files, including those written by the official ECA-Net code: reading them
safely, unwrapping them, telling which model they belong to, and loading them strictly.

Official checkpoints are `torch.save` dicts (`epoch`, `arch`, `state_dict`, `best_prec1`, `optimizer`)
saved from DataParallel, so keys carry a `module.` prefix, tensors may live on CUDA, and `arch` is not
reliable (ECA checkpoints were seen labelled `se_resnet50`): the architecture, the ECA kernel sizes and
the class count are read from the tensors. Files are always read with `weights_only=True`: a
checkpoint is untrusted input and must never run code. `.safetensors` files (safetensors_file.py,
recognised by extension or content) are read the same way, their metadata's `arch` as the label.
"""
import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from utils.errors import CheckpointError, UserError  # noqa: F401 (CheckpointError: re-exported)

from .registry import create_model, families, list_models, model_family
from .safetensors_file import is_safetensors, read_safetensors

# Prefixes added by wrappers: DataParallel/DDP ("module.") and torch.compile ("_orig_mod."), in any nesting.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _load_failure_detail(text: str) -> str:
    """The part of torch.load's message that says what is wrong with the file. For bytes that are no pickle,
    the weights-only unpickler wraps its reason ("Unsupported operand 73") in general advice, which includes
    retrying without weights_only: not advice for a file that failed to load."""
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split("Check the documentation", 1)[0].strip()
    return text[:120]


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint dict on the CPU without executing code from the file."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a folder, not a file: give the .pth.tar file inside it")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist; check the path")
    if is_safetensors(path):  # by extension or content; metadata `arch` is the label, as a checkpoint's field
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files; all mean "unusable"
        text = " ".join(str(exc).split())
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in text:
            raise CheckpointError(
                f"refusing to load {path!r}: it holds objects other than tensors and plain containers, which "
                "could run code; only weights files are accepted (re-save it with torch.save(state_dict))"
            ) from None
        raise CheckpointError(f"{path!r} is not a checkpoint, or is truncated or corrupt ({type(exc).__name__}: "
                              f"{_load_failure_detail(text)}); give a file written by torch.save") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def strip_wrapper_prefixes(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys without DataParallel/DDP/compile prefixes (torch's own helper, applied until none is left)."""
    state_dict = dict(state_dict)
    while any(key.startswith(WRAPPER_PREFIXES) for key in state_dict):
        for prefix in WRAPPER_PREFIXES:
            consume_prefix_in_state_dict_if_present(state_dict, prefix)
    return state_dict


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


def classifier_outputs(state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
    """The class count: the first dimension of a model family's classifier weight."""
    for family in families():
        if family.classifier_key in state_dict:
            return int(state_dict[family.classifier_key].shape[0])
    return None


def kernels_for(arch: str, state_dict: Dict[str, torch.Tensor]):
    """The k_size argument that rebuilds the checkpoint's ECA layers (None: the model's defaults)."""
    return model_family(arch).read_kernels(arch, state_dict)


def fits(name: str, state_dict: Dict[str, torch.Tensor]) -> bool:
    """Whether the registered model `name` has exactly the file's key names. Built on the meta device: no
    memory, no initialisation cost."""
    with torch.device("meta"):
        try:
            model = create_model(name, num_classes=classifier_outputs(state_dict) or 1000,
                                 k_size=kernels_for(name, state_dict))
        except ValueError:
            return False
    return set(model.state_dict()) == set(state_dict)


def infer_arch(state_dict: Dict[str, torch.Tensor], label: Optional[str] = None) -> Optional[str]:
    """The registered architecture of the file's tensors. `label` (the checkpoint's `arch` field) decides
    between models with the same tensors (SE-Var1 has none of its own: its keys are ResNet-50's), and only
    if it fits: the official files' label is not reliable (ECA models were saved as `se_resnet50`)."""
    if label in list_models() and fits(label, state_dict):
        return label
    return next((name for name in list_models() if fits(name, state_dict)), None)


def _finite(state_dict: Dict[str, torch.Tensor], path: str) -> Dict[str, torch.Tensor]:
    """The weights, if every floating-point tensor holds finite numbers: NaN or inf weights would evaluate to
    a meaningless accuracy (and train nothing)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path!r} holds weights that are not finite numbers (NaN or inf) in {len(bad)} tensors "
                              f"(e.g. {bad[0]}): the run that wrote it diverged; use an earlier checkpoint")
    return state_dict


@dataclass(frozen=True)
class WeightsFile:
    """A checkpoint read from disk: the whole dict (optimizer state etc. for --resume) and its weights."""
    path: str
    checkpoint: Dict[str, Any]
    state_dict: Dict[str, torch.Tensor]

    @classmethod
    def read(cls, path: str, entry: str = "state_dict") -> "WeightsFile":
        """The checkpoint at `path`, with the weights of its `entry`: "state_dict" (the model), or "model_ema"
        (the moving average kept by --model-ema: torch's AveragedModel, whose weights are under `module.`)."""
        checkpoint = read_checkpoint(path)
        if entry == "state_dict":
            return cls(path, checkpoint, _finite(extract_state_dict(checkpoint, path), path))
        average = checkpoint.get(entry)
        if not isinstance(average, dict):
            raise CheckpointError(f"checkpoint {path!r} holds no {entry!r} (it was trained without --model-ema): "
                                  "evaluate its weights without --model-ema")
        weights = {k: v for k, v in average.items() if k != "n_averaged"}
        return cls(path, checkpoint, _finite(extract_state_dict(weights, path), path))

    @property
    def arch(self) -> Optional[str]:
        label = self.checkpoint.get("arch")
        return infer_arch(self.state_dict, label if isinstance(label, str) else None)

    @property
    def num_classes(self) -> Optional[int]:
        return classifier_outputs(self.state_dict)

    def kernels(self, arch: str):
        return kernels_for(arch, self.state_dict)


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


def load_strict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Load `state_dict` into `model` with strict=True; a mismatch is a CheckpointError naming the tensors."""
    check_compatible(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_weights(model: torch.nn.Module, path: str) -> Dict[str, Any]:
    """Load `path` into `model` strictly. Returns the checkpoint dict."""
    weights = WeightsFile.read(path)
    load_strict(model, weights.state_dict, path)
    return weights.checkpoint


def apply_pretrained(model: torch.nn.Module, pretrained) -> torch.nn.Module:
    """Handle the factories' `pretrained` argument: False/None, or a path to a checkpoint file."""
    if pretrained is None or pretrained is False:
        return model
    if pretrained is True:
        raise UserError(
            "pretrained=True cannot download weights (the released files are on file-sharing sites); "
            "download one and pass its path, e.g. pretrained='eca_resnet50_k3557.pth.tar'"
        )
    load_weights(model, os.fspath(pretrained))
    return model
