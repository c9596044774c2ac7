"""Channel attention layers that plug into the backbones: ECA, ECA-NS, SE, CBAM, and the SE variants
SE-Var1/2/3 of the paper's Table 1.

Every layer maps (N, C, H, W) -> (N, C, H, W) and is built by `make_attention(kind, channels, k_size)`.
Parameter names of `ECA` (`conv.weight`, shape [1, 1, k]) equal the official code's, so released
checkpoints load unchanged. Pooling uses nn.AdaptiveAvgPool2d modules rather than tensor.mean so that
thop counts the same operations as for the official models (the paper's FLOPs column).
"""
import functools
import inspect
from typing import Callable, Dict, Optional, Union

import torch
from torch import nn

from utils.errors import UserError


ECA_IMPLEMENTATIONS = ("conv", "shifted", "fused")


def check_eca_impl(impl: str) -> str:
    if impl not in ECA_IMPLEMENTATIONS:
        raise UserError(f"unknown ECA implementation {impl!r}; expected one of {ECA_IMPLEMENTATIONS}")
    return impl


class ECA(nn.Module):
    """Efficient Channel Attention (paper §3): global average pool, a 1-D convolution of size k across
    channels with weights shared by all channels and no bias, sigmoid, then rescale the input."""

    def __init__(self, channels: int, k_size: int = 3, impl: str = "conv"):
        super().__init__()
        self.channels = channels
        self.k_size = k_size
        self.impl = check_eca_impl(impl)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel gate in (0, 1), shape (N, C, 1, 1); exposed for attention logging."""
        if self.impl == "conv":
            # (N, C, 1, 1) -> (N, 1, C): channels become the 1-D axis. The official layer's views exactly: the
            # convolution's backward then sums in the official order, and training is the official one bit for
            # bit (a contiguous copy rounds its weight gradient differently; tests/models/test_official_model.py).
            y = self.avg_pool(x).squeeze(-1).transpose(-1, -2)
            return self.sigmoid(self.conv(y).transpose(-1, -2).unsqueeze(-1))
        return self.gate_from_means(x.mean((2, 3)))[:, :, None, None]

    def gate_from_means(self, means: torch.Tensor) -> torch.Tensor:
        """The gate (N, C) from the channel means (N, C), written as k shifted, weighted copies of the
        means: only elementwise ops, which torch.compile fuses with the surrounding BN, residual add
        and ReLU instead of launching a separate tiny convolution. Same parameter, same function."""
        pad = (self.k_size - 1) // 2
        y = nn.functional.pad(means, (pad, pad))  # (N, C + k - 1)
        weight = self.conv.weight.view(-1).to(y.dtype)
        logits = sum(weight[j] * y[:, j:j + self.channels] for j in range(self.k_size))
        return self.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


class ECANonShared(nn.Module):
    """ECA-NS (paper Table 1): like ECA, but every channel owns its k weights. As in the official `eca_ns`
    layer, the pooled descriptors are unfolded into each channel's k-neighbourhood and a grouped Conv1d
    (weight `conv.weight` of shape [C, 1, k], one group per channel) weighs them, so the state_dict keys
    and shapes, the function and the initial distribution are the official layer's."""

    def __init__(self, channels: int, k_size: int = 3):
        super().__init__()
        self.channels = channels
        self.k_size = k_size
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(channels, channels, kernel_size=k_size, groups=channels, bias=False)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.k_size - 1) // 2
        y = nn.functional.pad(self.avg_pool(x).flatten(1), (pad, pad))  # (N, C + k - 1)
        neighbourhoods = y.unfold(1, self.k_size, 1)  # (N, C, k): channel c sees channels c-pad .. c+pad
        return self.sigmoid(self.conv(neighbourhoods))[:, :, :, None]  # conv output (N, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


class SqueezeExcite(nn.Module):
    """SE block with a bias-free two-layer MLP (reduction r): the form whose parameter counts equal
    the paper's Table 3 (SE-ResNet-50 26.77M with r=16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.relu(self.fc1(self.avg_pool(x).flatten(1))))
        return self.sigmoid(y)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


class CBAM(nn.Module):
    """CBAM: channel attention (shared bias-free MLP over average- and max-pooled descriptors),
    then spatial attention (7x7 conv over channel-wise mean and max maps)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, channels, bias=False)
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel gate (the part comparable with ECA's)."""
        y = self.mlp(self.avg_pool(x).flatten(1)) + self.mlp(self.max_pool(x).flatten(1))
        return self.sigmoid(y)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.gate(x).to(x.dtype)
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * self.sigmoid(self.spatial(maps)).to(x.dtype)


class SEVar1(nn.Module):
    """SE-Var1 (paper Table 1): gate = sigmoid(y), y the channel means. No parameters: it asks whether
    rescaling by a squashed descriptor helps at all, before any channel weighting is learned."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.avg_pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


class SEVar2(nn.Module):
    """SE-Var2 (paper Table 1): gate = sigmoid(w * y), one learned weight per channel (C parameters), i.e.
    SE-Var3 restricted to a diagonal matrix: no interaction between channels. The weight is the module's
    own parameter `weight` of shape [C] (`layer1.0.se_var2.weight`): a plain elementwise product, which thop
    does not count (C multiplies per layer, as negligible as ECA's)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        # Init 1: the layer starts as SE-Var1 exactly (as does SE-Var3, see there), so Var1 / Var2 / Var3
        # differ at the start of training by nothing but the freedom their extra parameters give. A zero init
        # would start at a constant 0.5 gate that ignores the descriptor; PyTorch's default for an equivalent
        # per-channel (depthwise, kernel 1) conv, U(-1, 1), would flip the gate's sense for half the channels.
        self.weight = nn.Parameter(torch.ones(channels))
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)  # (N, C, 1, 1)
        return self.sigmoid(self.weight[:, None, None] * y)  # type promotion: fp32 under autocast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


class SEVar3(nn.Module):
    """SE-Var3 (paper Table 1): gate = sigmoid(W y), one full C x C matrix: SE without the dimensionality
    reduction (one FC layer instead of two). The nn.Linear (`fc.weight`, [C, C]) has no bias, so the layer
    holds exactly C^2 parameters, the count the paper gives, and thop counts its C^2 multiply-adds."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, channels, bias=False)
        # Init W = I: the layer starts as SE-Var1 (and as SE-Var2 at its init), so the comparison measures
        # what learning the off-diagonal (cross-channel) weights adds. nn.Linear's default, U(+-1/sqrt(C)),
        # would start near a constant 0.5 gate with random cross-channel mixing instead.
        nn.init.eye_(self.fc.weight)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.fc(self.avg_pool(x).flatten(1)))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)


def set_eca_implementation(model: nn.Module, impl: str) -> nn.Module:
    """Switch every ECA layer of `model` to `impl` (same parameters, same function). Runs choose the form
    when they build the model (create_model(..., eca_impl=)); this is for tools that compare forms on one
    set of weights:
    conv: the reference Conv1d over pooled channels (the form thop counts);
    shifted: the gate as k shifted sums (ECA.gate_from_means), fusable by torch.compile;
    fused: additionally, the blocks compute BN + ECA + residual in two passes (models/fused_eca.py)."""
    check_eca_impl(impl)
    for module in model.modules():
        if isinstance(module, ECA):
            module.impl = impl
    return model


# The attention layers by kind name: what `-a` variants, `make_attention` and the CLI know. A new layer is one
# class (taking the channel count, plus any of the options below it uses) and one row here.
ATTENTION_LAYERS: Dict[str, Callable[..., nn.Module]] = {
    "eca": ECA, "eca_ns": ECANonShared, "se": SqueezeExcite, "cbam": CBAM,
    "se_var1": SEVar1, "se_var2": SEVar2, "se_var3": SEVar3,
}
ATTENTION_KINDS = tuple(ATTENTION_LAYERS)
# Options a backbone offers every layer; each layer takes those its constructor names.
_OPTION_NAMES = {"k_size": "k_size", "reduction": "reduction", "eca_impl": "impl"}

AttentionKind = Union[None, str, Callable[..., nn.Module]]


def attention_class(kind: AttentionKind) -> Optional[Callable[..., nn.Module]]:
    """The layer class (or factory) of `kind`: a registered name, or a class / functools.partial as is."""
    if kind is None or callable(kind):
        return kind
    if kind not in ATTENTION_LAYERS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {ATTENTION_KINDS}, a class, or None")
    return ATTENTION_LAYERS[kind]


def attention_name(kind: AttentionKind) -> str:
    """The attribute a block holds its layer under: the kind's registered name (`eca`, so ECA models have the
    official keys `layer2.0.eca.conv.weight`), or `attention` for an unregistered class."""
    if isinstance(kind, str):
        return kind
    layer = kind.func if isinstance(kind, functools.partial) else kind
    return next((name for name, cls in ATTENTION_LAYERS.items() if cls is layer), "attention")


def takes_kernel_size(kind: AttentionKind) -> bool:
    """Whether `kind`'s layers have an ECA kernel size (so that --ksize applies to models built with it)."""
    layer = attention_class(kind)
    return layer is not None and "k_size" in _parameters(layer)


def _parameters(layer) -> set:
    """The keyword arguments `layer` accepts and has not bound already (a partial's own keywords win)."""
    bound = set(layer.keywords) if isinstance(layer, functools.partial) else set()
    try:
        return set(inspect.signature(layer).parameters) - bound
    except (TypeError, ValueError):
        return set()


def make_attention(kind: AttentionKind, channels: int, k_size: int = 3, reduction: int = 16,
                   eca_impl: str = "conv") -> Optional[nn.Module]:
    """Build the attention layer `kind` for `channels` channels; None means a plain backbone. `kind` is a
    registered name, or a class or factory (e.g. functools.partial(SqueezeExcite, reduction=4)) called with the
    channel count and whichever of k_size, reduction and impl (eca_impl) its signature names."""
    layer = attention_class(kind)
    if layer is None:
        return None
    accepted = _parameters(layer)
    given = {"k_size": k_size, "reduction": reduction, "eca_impl": eca_impl}
    options = {_OPTION_NAMES[name]: value for name, value in given.items() if _OPTION_NAMES[name] in accepted}
    return layer(channels, **options)
