"""Every registered model builds, runs forward and backward, and the ECA models match the
official key names, shapes and parameter counts (fixture copied from the official checkpoints); the SE
variants of the paper's Table 1 add exactly 0 / C / C^2 parameters per block."""
import json
import os

import pytest
import torch

import models
from models import create_model, list_models
from models.attention import SEVar1, SEVar2, SEVar3
from models.mobilenetv2 import INVERTED_RESIDUAL_SETTING
from models.resnet import DEPTHS, STAGE_WIDTHS
from utils.errors import UserError

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "official_state_dict_shapes.json")
with open(FIXTURE) as f:
    OFFICIAL = json.load(f)


SE_VARIANT_KINDS = ("se_var1", "se_var2", "se_var3")
# The SE-Var ResNets at depths 34, 101 and 152 stack the same blocks (BasicBlock / Bottleneck) with the same
# attention layer as their depth-18 and depth-50 siblings, only more of them: on 2 CPU cores their forward and
# backward would add about 2.5 minutes and no code path. test_se_variant_parameter_counts builds them all.
REPEATED_BLOCKS = {f"{kind}_resnet{depth}" for kind in SE_VARIANT_KINDS for depth in (34, 101, 152)}


@pytest.mark.parametrize("name", [n for n in list_models() if n not in REPEATED_BLOCKS])
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


def test_every_se_variant_is_registered_and_the_skip_list_is_current():
    expected = {f"{kind}_{base}" for kind in SE_VARIANT_KINDS
                for base in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2")}
    assert expected <= set(list_models())
    assert REPEATED_BLOCKS < expected  # a renamed model would otherwise silently leave the forward test


def block_widths(base: str):
    """Output channels of every block carrying an attention layer, from the architecture tables
    (ResNet: stage width x expansion per block; MobileNetV2: c repeated n times; width 1.0 keeps c)."""
    if base == "mobilenet_v2":
        return [c for _, c, n, _ in INVERTED_RESIDUAL_SETTING for _ in range(n)]
    block, layers, _ = DEPTHS[int(base[len("resnet"):])]
    return [width * block.expansion for width, blocks in zip(STAGE_WIDTHS, layers) for _ in range(blocks)]


def n_params_meta(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init cost, so every depth is cheap
        return sum(p.numel() for p in create_model(name).parameters())


ADDED_PER_BLOCK = {"se_var1": lambda c: 0, "se_var2": lambda c: c, "se_var3": lambda c: c * c}


@pytest.mark.parametrize("base", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2"])
@pytest.mark.parametrize("kind", SE_VARIANT_KINDS)
def test_se_variant_parameter_counts(kind, base):
    """Var1 adds nothing to the plain backbone, Var2 C per block, Var3 C^2 per block."""
    widths = block_widths(base)
    added = sum(ADDED_PER_BLOCK[kind](c) for c in widths)
    assert n_params_meta(f"{kind}_{base}") == n_params_meta(base) + added
    if kind != "se_var1":
        assert added > 0  # the widths really came through


def test_se_variant_counts_on_real_resnet50_and_mobilenet_v2():
    """The same, on real (non-meta) models, with the widths' sums written out for the two reference backbones."""
    plain = {name: sum(p.numel() for p in create_model(name).parameters()) for name in ("resnet50", "mobilenet_v2")}
    for base in plain:
        widths = block_widths(base)
        assert len(widths) == (16 if base == "resnet50" else 17)
        for kind, added in (("se_var1", 0), ("se_var2", sum(widths)), ("se_var3", sum(c * c for c in widths))):
            model = create_model(f"{kind}_{base}")
            assert sum(p.numel() for p in model.parameters()) == plain[base] + added, (kind, base)


def test_se_variant_key_names_and_placement():
    """ResNet blocks hold the layer under its kind's name; MobileNetV2 blocks as the last element of `conv`."""
    r50 = create_model("se_var2_resnet50").state_dict()
    assert r50["layer1.0.se_var2.weight"].shape == (256,)
    assert r50["layer4.2.se_var2.weight"].shape == (2048,)
    assert create_model("se_var3_resnet18").state_dict()["layer2.1.se_var3.fc.weight"].shape == (128, 128)
    assert create_model("se_var1_resnet18").layer3[0].se_var1.__class__ is SEVar1
    for kind, cls in (("se_var1", SEVar1), ("se_var2", SEVar2), ("se_var3", SEVar3)):
        blocks = list(create_model(f"{kind}_mobilenet_v2").features)[1:-1]
        assert all(type(block.conv[-1]) is cls for block in blocks), kind
        assert [block.conv[-1].channels for block in blocks] == block_widths("mobilenet_v2")
    mb = create_model("se_var2_mobilenet_v2").state_dict()
    assert mb["features.1.conv.3.weight"].shape == (16,) and mb["features.2.conv.4.weight"].shape == (24,)


@pytest.mark.parametrize("name", ["se_var1_resnet50", "se_var2_resnet18", "se_var3_mobilenet_v2"])
def test_se_variants_reject_ksize(name):
    with pytest.raises(UserError, match="no ECA layer"):
        create_model(name, k_size="3")
