"""The SE variants of the paper's Table 1 (SE-Var1/2/3) compute their defining formulas, start where their
initialisation says, hold exactly 0 / C / C^2 parameters, and are counted by thop as the other layers."""
import contextlib
import io

import pytest
import torch

from models.attention import ATTENTION_KINDS, SEVar1, SEVar2, SEVar3, make_attention

VARIANTS = {"se_var1": SEVar1, "se_var2": SEVar2, "se_var3": SEVar3}


def explicit_gate(x, matrix):
    """sigmoid(M y) written out with loops, y[n, c] the mean of x[n, c] over H and W; SE-Var1 is M = I,
    SE-Var2 a diagonal M, SE-Var3 a full M."""
    n, c, h, w = x.shape
    x = x.double()
    gate = torch.zeros(n, c, dtype=torch.float64)
    for b in range(n):
        means = [sum(x[b, j, i, k].item() for i in range(h) for k in range(w)) / (h * w) for j in range(c)]
        for ch in range(c):
            gate[b, ch] = sum(matrix[ch, j].item() * means[j] for j in range(c))
    return torch.sigmoid(gate)[:, :, None, None]


def randomised(kind, channels):
    """The layer with non-initial weights, so the formula test does not pass only at the init."""
    torch.manual_seed(3)
    layer = make_attention(kind, channels)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    return layer


def effective_matrix(layer, channels):
    if isinstance(layer, SEVar2):
        return torch.diag(layer.weight.detach().double())
    if isinstance(layer, SEVar3):
        return layer.fc.weight.detach().double()
    return torch.eye(channels, dtype=torch.float64)


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_gate_and_forward_match_the_formula(kind):
    layer = randomised(kind, 6)
    x = torch.randn(3, 6, 5, 4) * 2
    expected = explicit_gate(x, effective_matrix(layer, 6))
    gate = layer.gate(x)
    assert gate.shape == (3, 6, 1, 1)
    assert ((gate > 0) & (gate < 1)).all()
    assert torch.allclose(gate.double(), expected, atol=1e-6)
    assert torch.allclose(layer(x).double(), x.double() * expected, atol=1e-5)


def test_the_weights_reach_the_gate():
    """With non-initial weights the three variants give different gates (Var2 and Var3 use their weights)."""
    x = torch.randn(2, 6, 3, 3)
    gates = [randomised(kind, 6).gate(x) for kind in ("se_var1", "se_var2", "se_var3")]
    assert not torch.allclose(gates[0], gates[1]) and not torch.allclose(gates[1], gates[2])


def test_initialisation_starts_every_variant_as_var1():
    """Var2's weights start at 1 and Var3's matrix at the identity (models/attention.py says why)."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    var2, var3 = SEVar2(8), SEVar3(8)
    assert torch.equal(var2.weight, torch.ones(8))
    assert torch.equal(var3.fc.weight, torch.eye(8))
    reference = torch.sigmoid(x.mean((2, 3)))[:, :, None, None]
    for layer in (SEVar1(8), var2, var3):
        assert torch.allclose(layer.gate(x), reference, atol=1e-6), type(layer).__name__


@pytest.mark.parametrize("kind,expected", [
    ("se_var1", {}), ("se_var2", {"weight": (12,)}), ("se_var3", {"fc.weight": (12, 12)}),
])
def test_parameter_names_and_counts(kind, expected):
    layer = make_attention(kind, 12)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == expected
    assert sum(p.numel() for p in layer.parameters()) == {"se_var1": 0, "se_var2": 12, "se_var3": 144}[kind]
    assert kind in ATTENTION_KINDS


def thop_macs(layer, x):
    from thop import profile

    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = profile(layer, inputs=(x,), verbose=False)
    return int(macs)


def test_thop_counts_var3_matrix_and_pools_like_the_other_layers():
    """The layers' pooling is the same nn.AdaptiveAvgPool2d for all three, so the thop counts differ by exactly
    Var3's C x C multiply-adds; Var2's C products are elementwise and uncounted (as ECA's rescaling is)."""
    x = torch.randn(1, 16, 7, 7)
    var1, var2, var3 = (thop_macs(make_attention(kind, 16), x) for kind in ("se_var1", "se_var2", "se_var3"))
    assert var1 > 0  # the pool is counted, as in the other attention layers
    assert var2 == var1
    assert var3 - var1 == 16 * 16


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_bf16_autocast_keeps_the_input_dtype_and_value(kind):
    torch.manual_seed(0)
    layer = randomised(kind, 8)
    x = torch.randn(2, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), layer(x), rtol=0.05, atol=0.05)
