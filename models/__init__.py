"""ECA-Net models: registry, attention layers, backbones, and their weights.

`from models import eca_resnet50` keeps the official factory call shape; `create_model(name, **kw)`
and `list_models()` serve the CLI.
"""
from . import mobilenetv2, resnet  # noqa: F401  (importing them registers their models)
from .attention import ATTENTION_LAYERS, CBAM, ECA, ECANonShared, SqueezeExcite, make_attention
from .ksize import adaptive_kernel_size, format_ksize, parse_ksize
from .mobilenetv2 import MobileNetV2
from .registry import (ModelFamily, create_model, factory, families, list_models, model_family, suggest_models,
                       unknown_model_message)
from .resnet import ResNet
from .weights import CheckpointError, WeightsFile, load_strict, load_weights

# Every registered factory by name, as in the official `models.eca_resnet50(...)` (importing the family
# modules above registered them).
FACTORIES = {name: factory(name) for name in list_models()}
globals().update(FACTORIES)

__all__ = sorted([
    "ATTENTION_LAYERS", "ModelFamily", "factory", "families", "CBAM", "ECA", "ECANonShared", "SqueezeExcite",
    "make_attention", "adaptive_kernel_size", "format_ksize", "parse_ksize", "MobileNetV2", "ResNet", "CheckpointError", "WeightsFile", "load_strict", "load_weights",
    "create_model", "list_models", "model_family", "suggest_models", "unknown_model_message", "FACTORIES",
    *FACTORIES,
])
