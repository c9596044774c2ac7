"""paras_flops.py through the real CLI: official-format numbers and exact counts, and its errors."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def run_cli(*args):
    return subprocess.run([sys.executable, "paras_flops.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("arch,params,flops,exact", [
    ("eca_resnet50", "24.37M", "3.86G", "25,557,112 params, 4,139,363,328 MACs"),
    ("eca_mobilenet_v2", "3.34M", "312.87M", "3,504,903 params, 328,064,224 MACs"),
    ("eca_resnet18", "11.15M", "1.70G", "11,689,556 params, 1,824,800,768 MACs"),
])
def test_official_numbers(arch, params, flops, exact):
    result = run_cli("-a", arch)
    assert result.returncode == 0, result.stderr
    assert f"Params {params}  FLOPs {flops}" in result.stdout
    assert exact in result.stdout
    assert "multiply-accumulates" in result.stdout


def test_ksize_changes_the_count():
    result = run_cli("-a", "eca_resnet50", "--ksize", "3,3,3,3")
    assert result.returncode == 0, result.stderr
    # Released 3557 holds 3*3 + 4*5 + 6*5 + 3*7 = 80 ECA weights; 3333 holds 16*3 = 48: 32 fewer.
    assert "25,557,080 params" in result.stdout


def test_unknown_arch_suggests():
    result = run_cli("-a", "eca_resnet5")
    assert result.returncode == 2
    assert "Did you mean eca_resnet50" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_ksize_says_why():
    result = run_cli("-a", "eca_resnet50", "--ksize", "3456")
    assert result.returncode == 2
    assert "odd" in result.stderr and "'3456'" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--num-classes", "-5"], "--num-classes must be positive, got -5"),
    (["--input-size", "100000"], "--input-size 100000 is larger than 4096"),
    (["--input-size", "16"], "too small"),
    (["--input-size", "abc"], "invalid int value: 'abc'"),
    (["-a", "eca_mobilenet_v2", "--ksize", "3557"], "takes one kernel size for every block"),
    (["-a", "resnet50", "--ksize", "3"], "no ECA layer"),
])
def test_every_bad_value_is_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_mobilenet_takes_one_kernel_size():
    result = run_cli("-a", "eca_mobilenet_v2", "--ksize", "5")
    assert result.returncode == 0, result.stderr
    assert "k_size 5" in result.stdout
