"""ECA-Net models: registry, attention layers and backbones.

`from models import eca_resnet50` keeps the official factory call shape; `create_model(name, **kw)`
and `list_models()` serve the CLI.
"""
from .attention import CBAM, ECA, ECANonShared, SqueezeExcite, make_attention
from .ksize import adaptive_kernel_size, format_ksize, parse_ksize
from .mobilenetv2 import MobileNetV2, eca_mobilenet_v2, mobilenet_v2, se_mobilenet_v2
from .pretrained import CheckpointError, load_weights
from .registry import create_model, list_models, model_family, suggest_models, unknown_model_message
from .resnet import ResNet
from .resnet_zoo import (
    eca_ns_resnet50, eca_resnet18, eca_resnet34, eca_resnet50, eca_resnet101, eca_resnet152,
)

__all__ = [
    "CBAM", "ECA", "ECANonShared", "SqueezeExcite", "make_attention", "adaptive_kernel_size", "format_ksize",
    "parse_ksize", "MobileNetV2", "ResNet", "CheckpointError", "load_weights", "create_model", "list_models",
    "model_family", "suggest_models", "unknown_model_message", "eca_mobilenet_v2", "mobilenet_v2",
    "se_mobilenet_v2", "eca_ns_resnet50", "eca_resnet18", "eca_resnet34", "eca_resnet50", "eca_resnet101",
    "eca_resnet152",
]
