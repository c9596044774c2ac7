"""ECA-Net models: registry, attention layers, backbones, and their weights.

`from models import eca_resnet50` keeps the official factory call shape; `create_model(name, **kw)`
and `list_models()` serve the CLI.
"""
from . import mobilenetv2 as _mobilenetv2
from . import resnet as _resnet
from .attention import CBAM, ECA, ECANonShared, SqueezeExcite, make_attention
from .ksize import adaptive_kernel_size, format_ksize, parse_ksize
from .mobilenetv2 import MobileNetV2
from .registry import create_model, list_models, model_family, suggest_models, unknown_model_message
from .resnet import ResNet
from .weights import CheckpointError, WeightsFile, load_strict, load_weights

# Every registered factory by name, as in the official `models.eca_resnet50(...)`: the rows of the ResNet
# table (models/resnet.py) and the MobileNetV2 family.
FACTORIES = {name: getattr(_resnet, name) for name in _resnet.RESNET_VARIANTS}
FACTORIES.update({name: getattr(_mobilenetv2, name) for name in list_models("mobilenet")})
globals().update(FACTORIES)

__all__ = sorted([
    "CBAM", "ECA", "ECANonShared", "SqueezeExcite", "make_attention", "adaptive_kernel_size", "format_ksize",
    "parse_ksize", "MobileNetV2", "ResNet", "CheckpointError", "WeightsFile", "load_strict", "load_weights",
    "create_model", "list_models", "model_family", "suggest_models", "unknown_model_message", "FACTORIES",
    *FACTORIES,
])
