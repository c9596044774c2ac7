"""Registered ResNet variants: depth x attention kind, defined as data over one ResNet class.

Released ECA kernel sizes (one per stage) come from the official model zoo (SPEC §4).
"""
from .registry import register_model
from .pretrained import apply_pretrained
from .resnet import BasicBlock, Bottleneck, ResNet, resolve_resnet_ksize

# depth -> (block, blocks per stage, released ECA kernel sizes)
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2), (3, 5, 7, 7)),
    34: (BasicBlock, (3, 4, 6, 3), (3, 3, 5, 7)),
    50: (Bottleneck, (3, 4, 6, 3), (3, 5, 5, 7)),
    101: (Bottleneck, (3, 4, 23, 3), (3, 3, 5, 7)),
    152: (Bottleneck, (3, 8, 36, 3), (3, 3, 5, 7)),
}


def build_resnet(depth: int, attention=None, k_size=None, num_classes: int = 1000, pretrained=False):
    block, layers, released = DEPTHS[depth]
    kernels = resolve_resnet_ksize(k_size, released, block)
    model = ResNet(block, layers, num_classes=num_classes, attention=attention, k_size=kernels)
    return apply_pretrained(model, pretrained)


def _check_no_ksize(name, k_size):
    if k_size is not None:
        raise ValueError(f"{name} has no ECA layer, so k_size={k_size!r} does not apply; drop --ksize")


# The factories keep the official call shape: eca_resnet50(k_size=..., num_classes=1000, pretrained=False).
@register_model("resnet")
def eca_resnet18(k_size=None, num_classes=1000, pretrained=False):
    return build_resnet(18, "eca", k_size, num_classes, pretrained)


@register_model("resnet")
def eca_resnet34(k_size=None, num_classes=1000, pretrained=False):
    return build_resnet(34, "eca", k_size, num_classes, pretrained)


@register_model("resnet")
def eca_resnet50(k_size=None, num_classes=1000, pretrained=False):
    return build_resnet(50, "eca", k_size, num_classes, pretrained)


@register_model("resnet")
def eca_resnet101(k_size=None, num_classes=1000, pretrained=False):
    return build_resnet(101, "eca", k_size, num_classes, pretrained)


@register_model("resnet")
def eca_resnet152(k_size=None, num_classes=1000, pretrained=False):
    return build_resnet(152, "eca", k_size, num_classes, pretrained)


@register_model("resnet")
def eca_ns_resnet50(k_size=None, num_classes=1000, pretrained=False):
    """ECA-NS (non-shared weights per channel), the paper's ablation; same kernel sizes as ECA-R50."""
    return build_resnet(50, "eca_ns", k_size, num_classes, pretrained)


def _baseline_factory(depth: int, attention):
    prefix = "" if attention is None else f"{attention}_"
    name = f"{prefix}resnet{depth}"

    def factory(k_size=None, num_classes=1000, pretrained=False):
        _check_no_ksize(name, k_size)
        return build_resnet(depth, attention, None, num_classes, pretrained)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{name}: the paper's comparison model (Table 3)."
    return register_model("resnet")(factory)


# The paper's comparison models: plain and SE for every depth, CBAM for.
BASELINES = {
    _baseline_factory(depth, attention).__name__: None
    for attention, depths in ((None, DEPTHS), ("se", DEPTHS), ("cbam", (50, 101)))
    for depth in depths
}
