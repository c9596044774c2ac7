"""The measurement scripts' own logic, on the CPU at tiny sizes: the block-end benchmark computes under
autocast as training does, the GPU checks compare fp32 paths with TF32 off, and the whole-model benchmark
keeps every number measured before it is stopped."""
import json
from argparse import Namespace

import pytest
import torch

from scripts import benchmark, benchmark_block_end, gpu_checks

CPU = torch.device("cpu")
TINY_BLOCK = Namespace(batch=2, channels=16, size=4, k=3, calls=1, warmup=1, repeats=1)


def test_block_end_computes_in_bf16_under_autocast_with_fp32_parameters():
    """bf16 activations met the ECA convolution's fp32 weight outside autocast and raised a dtype
    mismatch; now every variant runs as in a bf16 training step."""
    for label, attention, impl in benchmark_block_end.VARIANTS:
        result = benchmark_block_end.measure(attention, impl, False, TINY_BLOCK, CPU, "bf16")
        assert result["out_dtype"] == "bfloat16" and result["train_ms"] > 0 and result["eval_ms"] > 0, label


def test_block_end_script_prints_every_variant_under_bf16_autocast(capsys):
    assert benchmark_block_end.main(["--cpu", "--amp", "bf16", "--batch", "2", "--channels", "16", "--size", "4",
                                     "--calls", "1", "--warmup", "1", "--repeats", "1", "--modes", "eager"]) == 0
    out = capsys.readouterr().out
    assert "autocast bf16" in out
    rows = [line for line in out.splitlines() if line.startswith("| eager |")]
    assert [row.split(" | ")[1] for row in rows] == ["plain", "eca conv", "eca shifted", "eca fused"]


def test_block_end_variants_must_include_the_plain_baseline():
    with pytest.raises(SystemExit):
        benchmark_block_end.main(["--cpu", "--variants", "eca conv,eca fused"])


def test_tf32_is_off_inside_the_checks_and_restored_after():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with pytest.raises(ZeroDivisionError):
            with gpu_checks.tf32_disabled():
                assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
                1 / 0  # the switches come back after a failing check too
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_failing_check_becomes_a_failed_row():
    def check():
        yield {"check": "first", "ok": True}
        raise RuntimeError("no such decoder")

    rows = list(gpu_checks.rows_or_error(check()))
    assert rows[0] == {"check": "first", "ok": True}
    assert rows[1]["ok"] is False and "RuntimeError: no such decoder" in rows[1]["note"]


def test_benchmark_json_keeps_what_was_measured_before_a_stop(tmp_path, monkeypatch):
    """The JSON is rewritten after each measurement: a run stopped during the second model (as a time
    limit stops it) leaves the first model's train and eval numbers on disk."""
    rates = iter([100.0, 300.0])

    def fake_rate(*_args):
        value = next(rates, None)
        if value is None:
            raise KeyboardInterrupt  # the time limit
        return value

    monkeypatch.setattr(benchmark, "timed_rate", fake_rate)
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(["--archs", "eca_resnet18,resnet18", "--settings", "official", "--cpu", "--no-flops",
                        "--batch-size", "2", "--image-size", "32", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [(r["arch"], r["train_img_s"], r["eval_img_s"]) for r in report["results"]] == [("eca_resnet18", 100.0,
                                                                                          300.0)]
    assert report["env"]["batch_size"] == 2
