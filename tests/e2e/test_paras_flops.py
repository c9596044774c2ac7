"""paras_flops.py as users start it, through the interpreter: the official-format line and a bad value's one-line
error with exit 2 (every number and message is checked in-process by tests/test_paras_flops.py)."""
import subprocess
import sys

from tests.helpers import ROOT


def run_cli(*args):
    return subprocess.run([sys.executable, "paras_flops.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_official_numbers_from_the_shell():
    result = run_cli("-a", "eca_resnet18")
    assert result.returncode == 0, result.stderr
    assert "Params 11.15M  FLOPs 1.70G" in result.stdout
    assert "11,689,556 params, 1,824,800,768 MACs" in result.stdout


def test_a_bad_value_is_one_line_and_exit_2_from_the_shell():
    result = run_cli("-a", "eca_resnet5")
    assert result.returncode == 2
    assert "Did you mean eca_resnet50" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
