"""The fused BN + ECA + residual form (--eca-impl fused) computes what the reference modules compute:
outputs, every gradient and the BN running statistics agree, in fp32 and under bf16 autocast, with the
same state_dict; layers it must not fuse keep the reference path."""
import copy

import pytest
import torch
from torch import nn

from models import create_model
from models.attention import ECA, set_eca_implementation
from models.fused_eca import bn_eca_residual, can_fuse
from models.resnet import BasicBlock, Bottleneck


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def run_step(model, x, dtype):
    """One forward/backward with a fixed, non-uniform output weighting; returns output and grads."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout mask for every run
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = model(x)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out.float() * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.detach(), grads


def compare(reference, fused, x, dtype, tol):
    """fp32: fused and reference agree to `tol`. bf16: both are measured against the fp32 reference
    run, and the fused form may not be less accurate than the reference layers under autocast (the two
    round at different places, so they differ from each other by about twice bf16's own error)."""
    truth = run_step(copy.deepcopy(reference), x, torch.float32) if dtype == torch.bfloat16 else None
    out_r, dx_r, grads_r = run_step(reference, x, dtype)
    out_f, dx_f, grads_f = run_step(fused, x, dtype)
    assert grads_r.keys() == grads_f.keys() and grads_r
    pairs = [("output", out_f, out_r), ("input grad", dx_f, dx_r)]
    pairs += [(name, grads_f[name], grads_r[name]) for name in grads_r]
    for index, (name, got, ref) in enumerate(pairs):
        if truth is None:
            assert rel(got, ref) < tol, name
        else:
            exact = [truth[0], truth[1]] + [truth[2][n] for n in grads_r]
            assert rel(got, exact[index]) <= 1.5 * rel(ref, exact[index]) + tol, name
    for (name, a), (_, b) in zip(reference.named_buffers(), fused.named_buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name


def pair(model):
    reference = set_eca_implementation(model, "conv")
    fused = set_eca_implementation(copy.deepcopy(model), "fused")
    assert fused.state_dict().keys() == reference.state_dict().keys()
    return reference, fused


def perturb_bn(model, seed=0):
    """Non-trivial BN parameters and running statistics, so a wrong affine term cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-3)])
@pytest.mark.parametrize("block", [Bottleneck, BasicBlock])
@pytest.mark.parametrize("training", [True, False])
def test_resnet_block_fused_equals_reference(block, dtype, tol, training):
    torch.manual_seed(0)
    inplanes = 32
    downsample = nn.Sequential(nn.Conv2d(inplanes, 16 * block.expansion, 1, 2, bias=False),
                               nn.BatchNorm2d(16 * block.expansion))
    model = block(inplanes, 16, stride=2, downsample=downsample, attention="eca", k_size=5)
    perturb_bn(model)
    reference, fused = pair(model)
    reference.train(training), fused.train(training)
    x = torch.randn(4, inplanes, 10, 9) + 0.5  # a non-zero mean exercises the shifted variance
    for _ in range(2):  # the second step starts from the running statistics the first one updated
        compare(reference, fused, x, dtype, tol)


@pytest.mark.parametrize("arch", ["eca_resnet18", "eca_mobilenet_v2"])
def test_whole_model_fused_equals_reference(arch):
    """Training step then evaluation with the same weights, in float64 so that the comparison shows the
    algebra, not rounding amplified through 17 blocks whose last BNs see 8 values per channel:
    logits, every gradient and every buffer agree."""
    torch.manual_seed(0)
    model = create_model(arch, num_classes=7)
    perturb_bn(model)
    reference, fused = pair(model.double())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    compare(reference.train(), fused.train(), x, torch.float64, 1e-9)
    with torch.no_grad():
        assert rel(fused.eval()(x), reference.eval()(x)) < 1e-12


def test_fused_survives_large_activation_mean():
    """Squares summed around a value of the batch: a channel with mean 1e3 and spread 1 still gets
    the right variance in fp32 at the first step, when the running mean is still 0 (the naive
    E[x^2] - E[x]^2 is 5% off here: measured)."""
    torch.manual_seed(0)
    bn, eca = nn.BatchNorm2d(8), ECA(8, 3, impl="fused")
    reference = nn.Sequential(copy.deepcopy(bn), set_eca_implementation(copy.deepcopy(eca), "conv"))
    x = torch.randn(4, 8, 6, 6) + 1000.0
    expected = reference(x)
    assert rel(bn_eca_residual(x, bn, eca), expected) < 1e-4
    assert torch.allclose(bn.running_var, reference[0].running_var, rtol=1e-4)
    assert torch.allclose(bn.running_mean, reference[0].running_mean, rtol=1e-6)


def test_layers_that_must_not_fuse_keep_the_reference_path():
    eca = ECA(8, 3, impl="fused")
    assert can_fuse(nn.BatchNorm2d(8), eca)
    assert not can_fuse(nn.SyncBatchNorm(8), eca)  # statistics across processes
    assert not can_fuse(nn.BatchNorm2d(8, momentum=None), eca)  # cumulative average
    assert not can_fuse(nn.BatchNorm2d(8, affine=False), eca)
    assert not can_fuse(nn.BatchNorm2d(8), ECA(8, 3, impl="shifted"))


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match="conv"):
        set_eca_implementation(create_model("eca_resnet18", num_classes=3), "triton")


def test_attention_logging_sees_the_gates_of_a_fused_model():
    """The fused blocks bypass the ECA modules' forward, where gate logging hooks in: logging runs
    the unfused form for its pass and gives the reference gates, then restores the fused form."""
    from utils.analysis.attention_insight import channel_gates

    torch.manual_seed(0)
    reference, fused = pair(create_model("eca_resnet18", num_classes=3))
    images = torch.randn(2, 3, 32, 32)
    expected, got = channel_gates(reference, images), channel_gates(fused, images)
    assert expected.keys() == got.keys() and len(got) == 8
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-6), name
    assert all(m.impl == "fused" for m in fused.modules() if isinstance(m, ECA))


def test_fused_block_compiles_and_stays_equal():
    """The fused block under torch.compile (dynamo's graph capture and AOTAutograd's joint graph, the
    `aot_eager` backend: inductor's C++ build costs about 40 s on 2 cores) gives the reference block's
    outputs, gradients and running statistics, over two training steps and one evaluation step. Inductor's
    own kernels for it are checked on CUDA, where --compile is used: tests/gpu/test_cuda_paths.py."""
    torch.manual_seed(0)
    downsample = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
    reference, fused = pair(Bottleneck(16, 8, stride=2, downsample=downsample, attention="eca", k_size=3))
    perturb_bn(reference), perturb_bn(fused)
    compiled = torch.compile(fused, backend="aot_eager")
    x = torch.randn(4, 16, 12, 12) + 0.5
    for _ in range(2):
        out_r, dx_r, grads_r = run_step(reference.train(), x, torch.float32)
        out_c, dx_c, grads_c = run_step(compiled.train(), x, torch.float32)
        assert rel(out_c, out_r) < 1e-5 and rel(dx_c, dx_r) < 1e-5
        assert len(grads_c) == len(grads_r)
        for name in grads_r:
            assert rel(grads_c.get(name, grads_c.get("_orig_mod." + name)), grads_r[name]) < 1e-5, name
    for (name, a), (_, b) in zip(reference.named_buffers(), fused.named_buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    with torch.no_grad():
        assert rel(compiled.eval()(x), reference.eval()(x)) < 1e-5
