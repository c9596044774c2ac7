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
        ns.conv.weight.copy_(eca.conv.weight.flatten().expand(10, 5)[:, None, :])
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


def test_eca_shifted_sum_form_equals_reference_forward_and_backward():
    """The fusion-friendly formulation computes the same function with the same parameter: outputs and
    the gradients of input and weight agree in fp32, and within bf16 rounding under autocast."""
    torch.manual_seed(0)
    for k, dtype, tol in ((3, torch.float32, 1e-6), (7, torch.float32, 1e-6), (5, torch.bfloat16, 2e-2)):
        reference, fused = ECA(24, k), ECA(24, k, impl="shifted")
        fused.load_state_dict(reference.state_dict())
        x = torch.randn(4, 24, 6, 5)
        outputs, grads = [], []
        for layer in (reference, fused):
            xi = x.clone().requires_grad_(True)
            layer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = layer(xi)
            (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            outputs.append(out.float())
            grads.append((xi.grad, layer.conv.weight.grad))
        rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
        assert rel(outputs[1], outputs[0]) < tol, (k, dtype)
        assert rel(grads[1][0], grads[0][0]) < tol, (k, dtype)
        assert rel(grads[1][1], grads[0][1]) < max(tol, 1e-5), (k, dtype)
