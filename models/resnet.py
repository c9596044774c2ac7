"""One ResNet definition for the plain, ECA, ECA-NS, SE, SE-Var1/2/3 and CBAM variants.

Layout follows torchvision's ResNet (stride on the 3x3 conv of the bottleneck), with the attention
layer at the end of the residual branch: after the last BN, before the residual add and final ReLU.
The attention module is registered under its kind's name (`eca`, `se`, ...), so ECA models have the
official key names (`layer2.0.eca.conv.weight`).
"""
import math
from typing import List, Optional, Sequence, Type, Union

from torch import nn

from .attention import AttentionKind, attention_name, make_attention, takes_kernel_size
from .fused_eca import bn_eca_residual, can_fuse
from .ksize import ADAPTIVE, adaptive_kernel_size, parse_ksize
from .registry import ModelFamily, check_arguments, register_model
from .weights import apply_pretrained


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class _AttentionMixin:
    """Holds the optional attention layer under the name of its kind."""

    def _set_attention(self, kind: AttentionKind, channels: int, k_size: int, eca_impl: str) -> None:
        self.attention_name = None if kind is None else attention_name(kind)
        if kind is not None:
            self.add_module(self.attention_name, make_attention(kind, channels, k_size, eca_impl=eca_impl))

    def _finish(self, conv_out, bn: nn.BatchNorm2d, identity):
        """relu(attention(bn(conv_out)) + identity): the block's end, in the fused form when the
        attention is an ECA layer set to impl='fused' (same function, fewer memory passes)."""
        attention = None if self.attention_name is None else getattr(self, self.attention_name)
        if attention is not None and can_fuse(bn, attention):
            return bn_eca_residual(conv_out, bn, attention, identity, relu=True)
        out = bn(conv_out)
        if attention is not None:
            out = attention(out)
        return self.relu(out + identity)


class BasicBlock(_AttentionMixin, nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention=None, k_size=3, eca_impl="conv"):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._set_attention(attention, planes, k_size, eca_impl)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self._finish(self.conv2(out), self.bn2, identity)


class Bottleneck(_AttentionMixin, nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention=None, k_size=3, eca_impl="conv"):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self._set_attention(attention, planes * 4, k_size, eca_impl)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._finish(self.conv3(out), self.bn3, identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]
STAGE_WIDTHS = (64, 128, 256, 512)


class ResNet(nn.Module):
    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000,
                 attention: AttentionKind = None, k_size: Sequence[int] = (3, 3, 3, 3), eca_impl: str = "conv"):
        super().__init__()
        self.attention = attention
        self.eca_impl = eca_impl
        self.k_size = list(k_size)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for index, (width, blocks, k) in enumerate(zip(STAGE_WIDTHS, layers, self.k_size)):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", self._make_layer(block, width, blocks, stride, attention, k))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int, attention, k_size: int):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, attention, k_size, self.eca_impl)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, attention=attention, k_size=k_size, eca_impl=self.eca_impl)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # The official ECA init: He-normal over fan-out for every Conv2d; fc and the ECA Conv1d
        # keep PyTorch's defaults.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(self.avgpool(self.forward_features(x)).flatten(1))


def resolve_resnet_ksize(k_size, default: Sequence[int], block: Block) -> List[int]:
    """Turn any accepted k_size form into one kernel size per stage (see models/ksize.py)."""
    parsed = parse_ksize(k_size, num_stages=len(STAGE_WIDTHS))
    if parsed is None:
        return list(default)
    if parsed == ADAPTIVE:
        # Every block of a stage has the same output width, so ψ(C) is constant per stage.
        return [adaptive_kernel_size(w * block.expansion) for w in STAGE_WIDTHS]
    return parsed


# depth -> (block, blocks per stage, released ECA kernel sizes per stage: the official model zoo)
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2), (3, 5, 7, 7)),
    34: (BasicBlock, (3, 4, 6, 3), (3, 3, 5, 7)),
    50: (Bottleneck, (3, 4, 6, 3), (3, 5, 5, 7)),
    101: (Bottleneck, (3, 4, 23, 3), (3, 3, 5, 7)),
    152: (Bottleneck, (3, 8, 36, 3), (3, 3, 5, 7)),
}

# Every registered ResNet: name -> (depth, attention kind). ECA and its ablation ECA-NS; the paper's
# comparison models (Table 3): plain and SE (r = 16) at every depth, CBAM for; the SE
# variants of Table 1 (models/attention.py SEVar1/2/3) at every depth (the paper's ablation is on R-50).
_EVERY_DEPTH = {"resnet": None, "eca_resnet": "eca", "se_resnet": "se", "se_var1_resnet": "se_var1",
                "se_var2_resnet": "se_var2", "se_var3_resnet": "se_var3"}
RESNET_VARIANTS = {f"{prefix}{depth}": (depth, kind) for prefix, kind in _EVERY_DEPTH.items() for depth in DEPTHS}
RESNET_VARIANTS.update({"eca_ns_resnet50": (50, "eca_ns"), "cbam_resnet50": (50, "cbam"),
                        "cbam_resnet101": (101, "cbam")})


def stage_kernels(arch: str, state_dict) -> Optional[List[int]]:
    """One ECA kernel size per stage, read from the first block of each stage (`layerS.0.eca.conv.weight`,
    shape [., 1, k]); None for models without an ECA kind."""
    kind = RESNET_VARIANTS[arch][1]
    if not takes_kernel_size(kind):
        return None
    weights = [state_dict.get(f"layer{stage}.0.{attention_name(kind)}.conv.weight") for stage in range(1, 5)]
    return [int(w.shape[-1]) for w in weights] if all(w is not None for w in weights) else None


RESNET_FAMILY = ModelFamily(
    name="resnet", classifier_key="fc.weight", ksize_values=len(STAGE_WIDTHS),
    ksize_meaning="takes one kernel size per stage (e.g. 3557)", read_kernels=stage_kernels, entry_point="main.py")


def build_resnet(name: str, k_size=None, num_classes: int = 1000, pretrained=False, eca_impl: str = "conv") -> ResNet:
    """The registered ResNet `name`; see the factories' docstring for the arguments."""
    depth, attention = RESNET_VARIANTS[name]
    block, layers, released = DEPTHS[depth]
    check_arguments(name, k_size, num_classes, pretrained)
    kernels = resolve_resnet_ksize(k_size, released, block)
    model = ResNet(block, layers, num_classes=num_classes, attention=attention, k_size=kernels, eca_impl=eca_impl)
    return apply_pretrained(model, pretrained)


def _factory(name: str):
    def factory(k_size=None, num_classes=1000, pretrained=False, eca_impl="conv"):
        return build_resnet(name, k_size, num_classes, pretrained, eca_impl)

    depth, attention = RESNET_VARIANTS[name]
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (f"{name}: ResNet-{depth} with {attention or 'no'} attention. The official call shape: "
                       f"{name}(k_size=[3, 5, 5, 7], num_classes=1000, pretrained=False); k_size takes any form of "
                       "models/ksize.py (ECA kinds only), pretrained a checkpoint path, eca_impl the ECA form.")
    return register_model(RESNET_FAMILY, takes_ksize=takes_kernel_size(attention))(factory)


# The factories, importable by name as in the official code: `from models import eca_resnet50`.
globals().update({name: _factory(name) for name in RESNET_VARIANTS})
