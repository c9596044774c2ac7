"""ECA-Net models: registry, attention layers, backbones, and their weights.

`from models import eca_resnet50` keeps the official factory call shape; `create_model(name, **kw)`
and `list_models()` serve the CLI.
"""
from .attention import CBAM, ECA, ECANonShared, SqueezeExcite, make_attention
from .ksize import adaptive_kernel_size, format_ksize, parse_ksize
from .mobilenetv2 import MobileNetV2, eca_mobilenet_v2, mobilenet_v2, se_mobilenet_v2
from .registry import create_model, list_models, model_family, suggest_models, unknown_model_message
from .resnet import (
    ResNet, eca_ns_resnet50, eca_resnet18, eca_resnet34, eca_resnet50, eca_resnet101, eca_resnet152,
)
from .weights import CheckpointError, WeightsFile, load_strict, load_weights

__all__ = [
    "CBAM", "ECA", "ECANonShared", "SqueezeExcite", "make_attention", "adaptive_kernel_size", "format_ksize",
    "parse_ksize", "MobileNetV2", "ResNet", "CheckpointError", "WeightsFile", "load_strict", "load_weights",
    "create_model", "list_models", "model_family", "suggest_models", "unknown_model_message", "eca_mobilenet_v2",
    "mobilenet_v2", "se_mobilenet_v2", "eca_ns_resnet50", "eca_resnet18", "eca_resnet34", "eca_resnet50",
    "eca_resnet101", "eca_resnet152",
]
