"""Every registered model builds, runs forward and backward, and the ECA models match the
official key names, shapes and parameter counts (fixture copied from the official checkpoints)."""
import json
import os

import pytest
import torch

import models
from models import create_model, list_models

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "official_state_dict_shapes.json")
with open(FIXTURE) as f:
    OFFICIAL = json.load(f)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == [], f"parameters without a finite gradient: {no_grad[:5]}"
    zero_grad = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert zero_grad == [], f"parameters whose gradient is exactly zero: {zero_grad[:5]}"


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_keys_shapes_and_param_count_match_official(name):
    expected = OFFICIAL[name]
    model = create_model(name)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes) == list(expected["state_dict"]), "key names or order differ from the official model"
    assert shapes == expected["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == expected["n_params"]


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_prefixed_state_dict_loads_strictly(name, tmp_path):
    """A checkpoint in the official format (DataParallel `module.` prefix) loads with strict=True."""
    torch.manual_seed(1)
    state = {f"module.{k}": torch.randn(v) if v else torch.tensor(3)
             for k, v in OFFICIAL[name]["state_dict"].items()}
    path = tmp_path / f"{name}.pth.tar"
    torch.save({"epoch": 100, "arch": "se_resnet50", "state_dict": state, "best_prec1": torch.tensor(77.4),
                "optimizer": {"state": {}, "param_groups": []}}, path)
    model = create_model(name)
    models.load_weights(model, str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"]), key


def test_factory_keeps_official_call_shape():
    model = models.eca_resnet50(k_size=[3, 3, 3, 3], num_classes=10, pretrained=False)
    assert model.k_size == [3, 3, 3, 3]
    assert model.layer4[0].eca.conv.weight.shape == (1, 1, 3)
    assert model.fc.out_features == 10


def test_released_kernel_sizes_are_the_defaults():
    released = {"eca_resnet18": [3, 5, 7, 7], "eca_resnet34": [3, 3, 5, 7], "eca_resnet50": [3, 5, 5, 7],
                "eca_resnet101": [3, 3, 5, 7], "eca_resnet152": [3, 3, 5, 7]}
    for name, kernels in released.items():
        assert create_model(name).k_size == kernels, name


def test_mobilenet_kernel_rule():
    model = models.eca_mobilenet_v2()
    blocks = list(model.features)[1:-1]
    for block, k in zip(blocks, model.k_size):
        out_channels = block.conv[-2].num_features
        assert block.conv[-1].conv.weight.shape[-1] == k == (1 if out_channels < 96 else 3)


def test_pretrained_true_explains_instead_of_downloading():
    with pytest.raises(ValueError, match="cannot download"):
        models.eca_resnet18(pretrained=True)


def test_baselines_reject_ksize():
    with pytest.raises(ValueError, match="no ECA layer"):
        create_model("resnet50", k_size="3557")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean eca_resnet50"):
        create_model("eca_resnet5")


def test_paper_table3_param_counts():
    """Params in the official 1024-based unit for the comparison models (paper Table 3)."""
    expected = {"resnet50": 24.37, "se_resnet50": 26.77, "cbam_resnet50": 26.77, "resnet101": 42.49,
                "se_resnet101": 47.01, "cbam_resnet101": 47.01, "resnet152": 57.40, "se_resnet152": 63.68,
                "mobilenet_v2": 3.34, "se_mobilenet_v2": 3.40, "eca_resnet152": 57.40}
    for name, value in expected.items():
        n = sum(p.numel() for p in create_model(name).parameters())
        assert round(n / 1024 ** 2, 2) == value, name
