"""utils/training/numerics.py: the autocast context and loss scaler of each --amp choice, and the process-wide
switches set in one place."""
import contextlib

import pytest
import torch

from tests.helpers import cpu_numerics
from utils.training.numerics import AMP_DTYPES, Numerics, set_process_switches


def test_no_autocast_without_amp():
    numerics = Numerics(cpu_numerics(amp="none"))
    assert numerics.dtype is None and numerics.device == torch.device("cpu")
    assert isinstance(numerics.autocast(), contextlib.nullcontext)
    with numerics.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not numerics.grad_scaler().is_enabled()


def test_bf16_autocast_on_the_cpu_needs_no_loss_scaling():
    numerics = Numerics(cpu_numerics(amp="bf16"))
    with numerics.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not numerics.grad_scaler().is_enabled()  # bf16 has fp32's exponent range


def test_fp16_scales_the_loss():
    assert AMP_DTYPES == {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    numerics = Numerics(cpu_numerics(amp="fp16"))
    assert numerics.dtype is torch.float16
    assert numerics.grad_scaler().is_enabled()  # fp16 gradients underflow without it


def test_deterministic_algorithms_are_switched_on_and_off_by_the_flag():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        set_process_switches(cpu_numerics(deterministic=False))
        assert torch.are_deterministic_algorithms_enabled() == before[0]  # unchanged
        set_process_switches(cpu_numerics(deterministic=True))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cuda_switches_stay_untouched_on_the_cpu():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    set_process_switches(cpu_numerics())
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == before


def test_cuda_runs_get_tf32_and_autotuning_unless_deterministic(monkeypatch):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        set_process_switches(cpu_numerics(device="cuda:0"))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        set_process_switches(cpu_numerics(device="cuda:0", deterministic=True))
        assert not torch.backends.cudnn.benchmark
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = before[:3]
        torch.use_deterministic_algorithms(before[3], warn_only=before[4])
