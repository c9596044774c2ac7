"""The attention layers compute what the paper defines, checked against explicit loops."""
import torch

from models import ECA, ECANonShared, make_attention


def reference_eca(x, weight):
    """ECA written out: per-channel mean, then for each channel c a weighted sum of the means of
    channels c-p..c+p (zero outside), sigmoid, rescale."""
    n, c = x.shape[:2]
    k = weight.numel()
    p = (k - 1) // 2
    means = x.double().mean((2, 3))
    gate = torch.zeros(n, c, dtype=torch.float64)
    for ch in range(c):
        for j in range(k):
            src = ch + j - p
            if 0 <= src < c:
                gate[:, ch] += weight.double()[j] * means[:, src]
    return x.double() * torch.sigmoid(gate)[:, :, None, None]


def test_eca_matches_definition():
    torch.manual_seed(0)
    for k in (1, 3, 5, 7):
        layer = ECA(12, k)
        x = torch.randn(3, 12, 5, 4)
        expected = reference_eca(x, layer.conv.weight.detach().flatten())
        assert torch.allclose(layer(x).double(), expected, atol=1e-6), k


def test_eca_ns_with_equal_rows_equals_eca():
    """ECA-NS with every channel's weights equal to ECA's shared weights is the same function."""
    torch.manual_seed(0)
    eca, ns = ECA(10, 5), ECANonShared(10, 5)
    with torch.no_grad():
        ns.weight.copy_(eca.conv.weight.flatten().expand(10, 5))
    x = torch.randn(2, 10, 3, 3)
    assert torch.allclose(eca(x), ns(x), atol=1e-6)


def test_eca_parameter_name_and_shape():
    assert {k: tuple(v.shape) for k, v in ECA(64, 5).state_dict().items()} == {"conv.weight": (1, 1, 5)}


def test_make_attention_none_and_unknown():
    assert make_attention(None, 8) is None
    try:
        make_attention("nonsense", 8)
    except ValueError as exc:
        assert "nonsense" in str(exc)
    else:
        raise AssertionError("unknown attention kind accepted")
