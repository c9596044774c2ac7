"""--log-attention and scripts/inspect_attention.py."""

import torch

from models import create_model
from utils.analysis.attention_insight import channel_gates, eca_kernels


def test_kernels_and_gates_of_a_model():
    torch.manual_seed(0)
    model = create_model("eca_resnet18", num_classes=3)
    kernels = eca_kernels(model)
    assert list(kernels) == [f"layer{s}.{b}.eca" for s in range(1, 5) for b in range(2)]
    assert kernels["layer1.0.eca"] == model.layer1[0].eca.conv.weight.flatten().tolist()
    gates = channel_gates(model, torch.randn(2, 3, 32, 32))
    assert gates["layer4.1.eca"].shape == (2, 512)
    assert ((gates["layer2.0.eca"] > 0) & (gates["layer2.0.eca"] < 1)).all()
    assert model.training, "the model's mode is restored"
