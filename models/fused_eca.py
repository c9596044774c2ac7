"""BatchNorm + ECA + residual add (+ ReLU) as two passes over the activation instead of five.

The reference block end reads or writes the conv output many times: BN statistics, BN apply, ECA's
average pool, the gate multiply, then the residual add and ReLU. But the per-sample channel means
ECA pools are an affine function of the per-sample sums of BN's *input*:

    mean_hw(BN(x))[n, c] = a[c] * mean_hw(x)[n, c] + b[c],   a = gamma / sqrt(var + eps),  b = beta - a * mu

and BN's batch statistics are themselves sums over n of those per-sample sums (and sums of squares).
So one reduction pass over x gives everything; the gate g[n, c] follows on an (N, C) tensor; and

    out = relu(x * (a * g) + b * g + identity)

is one elementwise pass. Parameters, buffers and their updates are those of the unchanged
nn.BatchNorm2d and ECA modules, so state_dicts and checkpoints are identical. This formulation only
helps once torch.compile turns it into few kernels; in eager mode it is several small ops.
"""
import torch
from torch import nn

from .attention import ECA


def can_fuse(bn: nn.Module, attention: nn.Module) -> bool:
    """Only a plain local BatchNorm2d qualifies: SyncBatchNorm reduces across processes, and BN without
    affine parameters, running statistics or with a cumulative momentum keeps the reference path."""
    return (isinstance(attention, ECA) and attention.impl == "fused" and type(bn) is nn.BatchNorm2d
            and bn.affine and bn.track_running_stats and bn.momentum is not None)


def _batch_statistics(bn: nn.BatchNorm2d, x32: torch.Tensor, sample_means: torch.Tensor):
    """Batch mean and biased variance from one pass, updating the running statistics as BN does.
    Squares are summed around a per-channel value of this batch (its first pixel), so that
    E[x^2] - E[x]^2 does not cancel catastrophically when the activations' mean is large against
    their spread; the running mean would not do at the first steps, when it is still 0."""
    shift = x32[:1, :, :1, :1].detach()
    centred_sq = (x32 - shift).square().mean((2, 3))  # (N, C): same reduction pass as sample_means
    count = x32.shape[0] * x32.shape[2] * x32.shape[3]
    mean_from_shift = sample_means.mean(0) - shift.flatten()
    mean = mean_from_shift + shift.flatten()
    var = (centred_sq.mean(0) - mean_from_shift.square()).clamp_min(0.0)
    with torch.no_grad():
        unbiased = var * (count / max(count - 1, 1))
        bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), bn.momentum)
        bn.running_var.lerp_(unbiased.detach().to(bn.running_var.dtype), bn.momentum)
        bn.num_batches_tracked.add_(1)
    return mean, var


def bn_eca_residual(x: torch.Tensor, bn: nn.BatchNorm2d, eca: ECA, identity=None, relu: bool = False):
    """relu?(ECA(BN(x)) + identity?) computed in at least fp32 and returned in x's dtype; see the
    module doc."""
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))
    sample_means = x32.mean((2, 3))  # (N, C)
    if bn.training:
        mean, var = _batch_statistics(bn, x32, sample_means)
    else:
        mean, var = bn.running_mean.to(x32.dtype), bn.running_var.to(x32.dtype)
    scale = bn.weight.to(x32.dtype) * torch.rsqrt(var + bn.eps)  # (C,)
    shift = bn.bias.to(x32.dtype) - mean * scale
    gate = eca.gate_from_means(sample_means * scale + shift)  # (N, C): the means of BN's output
    out = x32 * (scale * gate)[:, :, None, None] + (shift * gate)[:, :, None, None]
    if identity is not None:
        out = out + identity.to(x32.dtype)
    if relu:
        out = out.relu()
    return out.to(x.dtype)
