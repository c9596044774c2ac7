"""torch.hub entry points: every registered model, by name.

    net = torch.hub.load("path/to/this/repo", "eca_resnet50", source="local", k_size="3557")
    net = torch.hub.load("path/to/this/repo", "eca_resnet50", source="local",
                         pretrained="eca_resnet50_k3557.pth.tar")   # a local checkpoint file
    # pretrained= also takes a .safetensors file (scripts/convert_weights.py; needs `safetensors`)

Keyword arguments are those of the factories: k_size, num_classes, pretrained (False or a file path).
"""
from models import create_model, list_models

dependencies = ["torch", "torchvision"]


def _entrypoint(name: str):
    def build(**kwargs):
        return create_model(name, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}(k_size=None, num_classes=1000, pretrained=False): see models/ and the README."
    return build


for _name in list_models():
    globals()[_name] = _entrypoint(_name)
