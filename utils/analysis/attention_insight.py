"""What the attention layers learned: ECA kernels per layer, and the channel gates they produce on a
batch. Used by --log-attention (TensorBoard, each epoch) and scripts/inspect_attention.py."""
import copy
from typing import Dict, List, Tuple

import torch
from torch import nn

from models.attention import ECA, ECANonShared, set_eca_implementation


def attention_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Every module with a channel gate (ECA, ECA-NS, SE, CBAM), in model order."""
    return [(name, m) for name, m in model.named_modules() if callable(getattr(m, "gate", None))]


def eca_kernels(model: nn.Module) -> Dict[str, List[float]]:
    """The learned 1-D kernel of each ECA layer (ECA-NS: the mean over channels of its kernels)."""
    out = {}
    for name, module in attention_layers(model):
        if isinstance(module, ECA):
            out[name] = module.conv.weight.detach().flatten().float().cpu().tolist()
        elif isinstance(module, ECANonShared):
            out[name] = module.conv.weight.detach().float().flatten(1).mean(0).cpu().tolist()
    return out


@torch.no_grad()
def channel_gates(model: nn.Module, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Gate values (N, C) of every attention layer for `images`, from one eval-mode forward pass of a copy
    of `model` in the reference ECA form (the fused block form never calls the ECA modules, so their
    hooks would not fire; same weights, same function)."""
    reference = set_eca_implementation(copy.deepcopy(model), "conv").eval()
    gates, hooks = {}, []
    for name, module in attention_layers(reference):
        def record(mod, inputs, _output, name=name):
            gates[name] = mod.gate(inputs[0]).flatten(1).float().cpu()

        hooks.append(module.register_forward_hook(record))
    reference(images)
    return gates


def log_attention(logger, model: nn.Module, images: torch.Tensor, epoch: int) -> None:
    """TensorBoard (through the run's logger): each ECA kernel's taps as scalars and each layer's gate
    distribution as a histogram."""
    if logger.writer is None:
        return
    for name, taps in eca_kernels(model).items():
        for i, value in enumerate(taps):
            logger.scalar(f"attention_kernel/{name}/tap{i}", value, epoch)
    for name, gate in channel_gates(model, images).items():
        logger.histogram(f"attention_gates/{name}", gate, epoch)
