"""One MobileNetV2 definition (torchvision layout, width 1.0, ReLU6) for plain, ECA, SE and SE-Var1/2/3.

Every inverted residual ends with pw-linear conv + BN + attention; the attention layer is the last
element of the block's `conv` Sequential, matching the official ECA-MobileNetV2 keys
(`features.1.conv.3.conv.weight`).
"""
from typing import List, Optional

import torch
from torch import nn

from .attention import AttentionKind, make_attention, takes_kernel_size
from .fused_eca import bn_eca_residual, can_fuse
from .ksize import ADAPTIVE, adaptive_kernel_size, parse_ksize
from .registry import ModelFamily, check_arguments, register_model
from .weights import apply_pretrained

# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper, Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
SE_REDUCTION = 8  # paper Table 3: SE-MobileNetV2 at 3.40M params


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor` without dropping more than 10% (MobileNet convention)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def official_eca_kernel(channels: int) -> int:
    """The released ECA-MobileNetV2 rule: k = 1 below 96 output channels, else 3."""
    return 1 if channels < 96 else 3


def conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int, attention: AttentionKind, k_size: int,
                 eca_impl: str = "conv"):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_residual = stride == 1 and inp == out
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        attn = make_attention(attention, out, k_size, reduction=SE_REDUCTION, eca_impl=eca_impl)
        if attn is not None:
            layers.append(attn)
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        layers = self.conv
        if len(layers) >= 2 and can_fuse(layers[-2], layers[-1]):
            # pw-linear BN + ECA + residual add in two passes (models/fused_eca.py); no ReLU here.
            out = x
            for index in range(len(layers) - 2):
                out = layers[index](out)
            return bn_eca_residual(out, layers[-2], layers[-1], x if self.use_residual else None)
        return x + layers(x) if self.use_residual else layers(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, attention: AttentionKind = None,
                 k_size=None, dropout: float = 0.25, eca_impl: str = "conv"):
        super().__init__()
        self.attention = attention
        parsed = parse_ksize(k_size, num_stages=1)
        stem = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: List[nn.Module] = [conv_bn_relu6(3, stem, stride=2)]
        inp, self.k_size = stem, []
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out = make_divisible(c * width_mult)
            if parsed is None:
                k = official_eca_kernel(out)
            elif parsed == ADAPTIVE:
                k = adaptive_kernel_size(out)
            else:
                k = parsed[0]
            for i in range(n):
                features.append(InvertedResidual(inp, out, s if i == 0 else 1, t, attention, k, eca_impl))
                self.k_size.append(k)
                inp = out
        features.append(conv_bn_relu6(inp, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m in self.classifier:
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        # Global pooling as a mean over H and W, as in the official model.
        return self.classifier(self.forward_features(x).mean((2, 3)))


def _read_kernels(arch: str, state_dict):
    """The k_size that rebuilds a checkpoint's ECA layers: the released rule (None), ψ(C) ("adaptive") or one
    size for every block, whichever gives the file's kernels (the 1-D convolutions, in model order:
    `features.N.conv.M.conv.weight` of shape [1, 1, k])."""
    kernels = [int(v.shape[-1]) for k, v in state_dict.items() if k.endswith("conv.weight") and v.dim() == 3]
    if not kernels or not takes_kernel_size(MOBILENET_VARIANTS[arch]):
        return None
    classes = state_dict[MOBILENET_FAMILY.classifier_key].shape[0] if MOBILENET_FAMILY.classifier_key in state_dict else 1000
    for candidate in (None, ADAPTIVE, kernels[0]):
        with torch.device("meta"):
            if MobileNetV2(int(classes), attention=MOBILENET_VARIANTS[arch], k_size=candidate).k_size == kernels:
                return candidate
    return None


MOBILENET_FAMILY = ModelFamily(
    name="mobilenet", classifier_key="classifier.1.weight", ksize_values=1,
    ksize_meaning="takes one kernel size for every block (an odd number such as 3) or 'adaptive', not one per stage",
    read_kernels=_read_kernels, entry_point="light_main.py")

# Every registered MobileNetV2: name -> attention kind (ECA, the paper's Table 3 comparison with SE at r = 8,
# and the Table 1 SE variants).
MOBILENET_VARIANTS = {"eca_mobilenet_v2": "eca", "mobilenet_v2": None, "se_mobilenet_v2": "se",
                      "se_var1_mobilenet_v2": "se_var1", "se_var2_mobilenet_v2": "se_var2",
                      "se_var3_mobilenet_v2": "se_var3"}


def build_mobilenet_v2(name: str, k_size=None, num_classes: int = 1000, pretrained=False, width_mult: float = 1.0,
                       eca_impl: str = "conv") -> MobileNetV2:
    attention = MOBILENET_VARIANTS[name]
    check_arguments(name, k_size, num_classes, pretrained)
    model = MobileNetV2(num_classes, width_mult, attention=attention, k_size=k_size, eca_impl=eca_impl)
    return apply_pretrained(model, pretrained)


def _factory(name: str):
    def factory(k_size=None, num_classes=1000, pretrained=False, width_mult=1.0, eca_impl="conv"):
        return build_mobilenet_v2(name, k_size, num_classes, pretrained, width_mult, eca_impl)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (f"{name}: MobileNetV2 with {MOBILENET_VARIANTS[name] or 'no'} attention. k_size (ECA only): "
                       "None keeps the released rule (1 below 96 channels, else 3), one odd int for every block, "
                       "or 'adaptive' for ψ(C); pretrained: a checkpoint path.")
    return register_model(MOBILENET_FAMILY, takes_ksize=takes_kernel_size(MOBILENET_VARIANTS[name]))(factory)


globals().update({name: _factory(name) for name in MOBILENET_VARIANTS})
