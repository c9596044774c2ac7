"""ECA-ResNets (any registered ResNet-family model) as torchvision detection backbones with an FPN.

    from torchvision.models.detection import FasterRCNN
    from models.detection import resnet_fpn_backbone

    backbone = resnet_fpn_backbone("eca_resnet50", weights="eca_resnet50_k3557.pth.tar")
    detector = FasterRCNN(backbone, num_classes=91)      # RetinaNet, MaskRCNN: the same way

What torchvision's own `resnet_fpn_backbone` does for its ResNets, for ours: the classifier body
(conv1 .. layer4) under an `IntermediateLayerGetter` (`body.`), a feature pyramid over the returned stages
(`fpn.`), `out_channels` set; the stem and the first stages frozen (`trainable_layers`, torchvision's
meaning), and every BatchNorm2d replaced by a FrozenBatchNorm2d holding its statistics and affine
parameters (detection batches are too small for batch statistics). ECA layers stay as they are. The
ImageNet weights are read as everywhere in the project (models/weights.py): official files with their
`module.` prefix, ours, bare state_dicts, .safetensors; architecture and kernel sizes from the tensors.
"""
from typing import Sequence, Union

import torch
from torch import nn

from utils.errors import UserError

from .registry import create_model, list_models, model_family
from .resnet import ResNet
from .weights import CheckpointError, WeightsFile, load_strict

LAYERS_FROM_TOP = ("layer4", "layer3", "layer2", "layer1", "conv1")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every nn.BatchNorm2d under `module` (in place) by a torchvision FrozenBatchNorm2d with the same
    running statistics, weight, bias and eps: the eval-mode function, fixed in training too."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            device = next(iter(child.state_dict().values())).device
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps).to(device)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def freeze_stages(model: ResNet, trainable_layers: int) -> None:
    """torchvision's rule: train the top `trainable_layers` of layer4, layer3, layer2, layer1, conv1 (5 also
    trains bn1); every other parameter gets requires_grad False."""
    if not 0 <= trainable_layers <= 5:
        raise UserError(f"trainable_layers must be between 0 and 5 (torchvision's range), got {trainable_layers}")
    trained = list(LAYERS_FROM_TOP[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    for name, parameter in model.named_parameters():
        if not any(name == layer or name.startswith(layer + ".") for layer in trained):
            parameter.requires_grad_(False)


def _resnet(arch_or_model: Union[None, str, nn.Module], weights) -> ResNet:
    """The classifier model: built by name (kernel sizes and class count from the file when given), or the
    given module; the checkpoint's weights loaded strictly."""
    file = WeightsFile.read(str(weights)) if weights is not None else None
    if isinstance(arch_or_model, nn.Module):
        model = arch_or_model
    else:
        arch = arch_or_model or (file.arch if file is not None else None)
        if arch is None:
            raise CheckpointError(f"{weights}: its tensors match no registered model; give the architecture by name")
        family = model_family(arch)
        if family.name != "resnet":
            raise UserError(f"{arch} is a {family.name} model: detection backbones are built from ResNet-family models "
                            f"({', '.join(n for n in list_models('resnet') if n.startswith('eca_'))}, ...)")
        k_size = file.kernels(arch) if file is not None else None
        model = create_model(arch, k_size=k_size, num_classes=(file.num_classes if file else None) or 1000)
    if not isinstance(model, ResNet):
        raise UserError(f"a detection backbone needs a ResNet-family model (models.resnet.ResNet), got "
                        f"{type(model).__name__}")
    if file is not None:
        load_strict(model, file.state_dict, str(weights))
    return model


def resnet_fpn_backbone(arch_or_model: Union[None, str, nn.Module] = None, weights=None, trainable_layers: int = 3,
                        returned_layers: Sequence[int] = (1, 2, 3, 4), frozen_bn: bool = True, extra_blocks=None,
                        out_channels: int = 256):
    """A torchvision BackboneWithFPN over a registered ResNet-family model.

    arch_or_model: a registered name ("eca_resnet50"; the ECA kernel sizes are the file's, else the released
        ones), a ResNet built by this project (other kernel sizes: `create_model(arch, k_size="3333")`), or None
        with `weights` (the architecture read from the file's tensors).
    weights: a checkpoint path (an ImageNet classifier: official `.pth.tar`, ours, a bare state_dict or a
        `.safetensors`), loaded strictly before the classifier is dropped; None keeps the initialisation.
    trainable_layers: 0..5, as in torchvision (3: layer2, layer3 and layer4 train; conv1 and layer1 frozen).
    returned_layers: the stages the FPN reads (1..4).
    frozen_bn: BatchNorm2d -> FrozenBatchNorm2d (torchvision's default for detection); False keeps BN.
    extra_blocks: the FPN's extra block (default LastLevelMaxPool, as torchvision: the "pool" level).
    out_channels: the FPN's channels (torchvision's 256).
    """
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    returned = list(returned_layers)
    if not returned or any(not 1 <= k <= 4 for k in returned) or sorted(set(returned)) != returned:
        raise UserError(f"returned_layers must be increasing stage numbers between 1 and 4, got {returned_layers}")
    model = _resnet(arch_or_model, weights)
    if frozen_bn:
        freeze_batchnorm(model)
    freeze_stages(model, trainable_layers)
    widths = [model.inplanes // 8 * 2 ** (k - 1) for k in returned]  # the stages' output channels
    backbone = BackboneWithFPN(model, {f"layer{k}": str(i) for i, k in enumerate(returned)}, widths, out_channels,
                               extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool())
    return backbone
