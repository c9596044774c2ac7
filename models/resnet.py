"""One ResNet definition for the plain, ECA, ECA-NS, SE and CBAM variants.

Layout follows torchvision's ResNet (stride on the 3x3 conv of the bottleneck), with the attention
layer at the end of the residual branch: after the last BN, before the residual add and final ReLU.
The attention module is registered under its kind's name (`eca`, `se`, ...), so ECA models have the
official key names (`layer2.0.eca.conv.weight`).
"""
import math
from typing import List, Optional, Sequence, Type, Union

from torch import nn

from .attention import make_attention
from .fused_eca import bn_eca_residual, can_fuse
from .ksize import ADAPTIVE, adaptive_kernel_size, parse_ksize


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class _AttentionMixin:
    """Holds the optional attention layer under the name of its kind."""

    def _set_attention(self, kind: Optional[str], channels: int, k_size: int) -> None:
        self.attention_name = kind
        if kind is not None:
            self.add_module(kind, make_attention(kind, channels, k_size))

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

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention=None, k_size=3):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._set_attention(attention, planes, k_size)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self._finish(self.conv2(out), self.bn2, identity)


class Bottleneck(_AttentionMixin, nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention=None, k_size=3):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self._set_attention(attention, planes * 4, k_size)
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
                 attention: Optional[str] = None, k_size: Sequence[int] = (3, 3, 3, 3)):
        super().__init__()
        self.attention = attention
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
        layers = [block(self.inplanes, planes, stride, downsample, attention, k_size)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, attention=attention, k_size=k_size) for _ in range(1, blocks)]
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
