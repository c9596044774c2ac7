"""scripts/benchmarks/block_end.py on the CPU at tiny sizes: every variant computes under autocast as training
does, the table has one row per variant with its ratio to the plain block, and plain must be measured."""
from argparse import Namespace

import pytest
import torch

from scripts.benchmarks import block_end

CPU = torch.device("cpu")
TINY_BLOCK = Namespace(batch=2, channels=16, size=4, k=3, calls=1, warmup=1, repeats=1)
TINY_FLAGS = ["--cpu", "--batch", "2", "--channels", "16", "--size", "4", "--calls", "1", "--warmup", "1",
              "--repeats", "1", "--modes", "eager"]


def test_every_variant_computes_in_bf16_under_autocast_with_fp32_parameters():
    """bf16 activations met the ECA convolution's fp32 weight outside autocast and raised a dtype
    mismatch; now every variant runs as in a bf16 training step."""
    for label, attention, impl in block_end.VARIANTS:
        result = block_end.measure(attention, impl, False, TINY_BLOCK, CPU, "bf16")
        assert result["out_dtype"] == "bfloat16" and result["train_ms"] > 0 and result["eval_ms"] > 0, label


def test_fp32_on_the_cpu_by_default_one_row_per_variant(capsys):
    assert block_end.main(TINY_FLAGS) == 0
    out = capsys.readouterr().out
    assert "autocast none" in out
    rows = [line for line in out.splitlines() if line.startswith("| eager |")]
    assert [row.split(" | ")[1] for row in rows] == ["plain", "eca conv", "eca shifted", "eca fused"]
    assert "| eager | plain | " in rows[0] and "(1.00x)" in rows[0]


def test_the_script_prints_every_variant_under_bf16_autocast(capsys):
    assert block_end.main([*TINY_FLAGS, "--amp", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "autocast bf16" in out
    rows = [line for line in out.splitlines() if line.startswith("| eager |")]
    assert [row.split(" | ")[1] for row in rows] == ["plain", "eca conv", "eca shifted", "eca fused"]


def test_the_variants_must_include_the_plain_baseline(capsys):
    with pytest.raises(SystemExit) as info:
        block_end.main(["--cpu", "--variants", "eca conv,eca fused"])
    assert info.value.code == 2 and "--variants must include plain" in capsys.readouterr().err
