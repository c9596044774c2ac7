"""paras_flops.py in this process: the official-format numbers and exact counts, the table of every model, and
each bad value as one line with exit 2. The released ECA models are counted by thop for real at 224 px (the
paper's numbers are a promise of the project); the rest count on the meta device (the same numbers,
tests/analysis/test_flops.py)."""
import sys

import pytest

import paras_flops
from models import list_models
from tests.helpers import meta_params_macs
from utils.running.entry import run_cli


def cli(argv, capsys):
    code = run_cli(paras_flops.main, argv, prog="paras_flops.py")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def on_meta(monkeypatch):
    from utils.analysis import flops

    monkeypatch.setattr(paras_flops, "count_params_macs", meta_params_macs, raising=False)
    monkeypatch.setattr(flops, "count_params_macs", meta_params_macs)


@pytest.mark.parametrize("arch,params,flops,exact", [
    ("eca_resnet50", "24.37M", "3.86G", "25,557,112 params, 4,139,363,328 MACs"),
    ("eca_mobilenet_v2", "3.34M", "312.87M", "3,504,903 params, 328,064,224 MACs"),
])
def test_official_numbers_counted_by_thop(arch, params, flops, exact, capsys):
    code, out, err = cli(["-a", arch], capsys)
    assert code == 0, err
    assert f"Params {params}  FLOPs {flops}" in out and exact in out
    assert "multiply-accumulates" in out


def test_eca_resnet18(on_meta, capsys):
    code, out, _ = cli(["-a", "eca_resnet18"], capsys)
    assert code == 0
    assert "eca_resnet18: Params 11.15M  FLOPs 1.70G  (exact: 11,689,556 params, 1,824,800,768 MACs)" in out


def test_ksize_changes_the_count(on_meta, capsys):
    code, out, _ = cli(["-a", "eca_resnet50", "--ksize", "3,3,3,3"], capsys)
    assert code == 0
    # Released 3557 holds 3*3 + 4*5 + 6*5 + 3*7 = 80 ECA weights; 3333 holds 16*3 = 48: 32 fewer.
    assert "25,557,080 params" in out and out.splitlines()[0].endswith("k_size 3333")


def test_mobilenet_takes_one_kernel_size(on_meta, capsys):
    code, out, err = cli(["-a", "eca_mobilenet_v2", "--ksize", "5"], capsys)
    assert code == 0, err
    assert "k_size 5" in out


def test_a_table_of_every_model(monkeypatch, capsys):
    """The table's rows and units; the counts themselves are checked above and in tests/analysis/test_flops.py."""
    seen = []

    def fixed(arch, k_size, input_size, num_classes):
        seen.append((arch, k_size, input_size, num_classes))
        return {"params": 3 * 1024 ** 2, "macs": 2 * 1024 ** 3}

    monkeypatch.setattr(paras_flops, "count_params_macs", fixed)
    code, out, _ = cli(["--all", "--input-size", "64", "--num-classes", "10"], capsys)
    assert code == 0
    assert out.startswith("Input 64x64; FLOPs are thop multiply-accumulates; M and G are powers of 1024.")
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| arch")]
    assert [row.split(" | ")[0][2:] for row in rows] == list_models()
    assert rows[0].endswith(" | 3.00M | 2.00G | 3,145,728 | 2,147,483,648 |")
    assert seen == [(arch, None, 64, 10) for arch in list_models()]


def test_unknown_arch_suggests(capsys):
    code, _, err = cli(["-a", "eca_resnet5"], capsys)
    assert code == 2
    assert "Did you mean eca_resnet50" in err and err.startswith("paras_flops.py: error: ")
    assert len(err.strip().splitlines()) == 1


def test_bad_ksize_says_why(capsys):
    code, _, err = cli(["-a", "eca_resnet50", "--ksize", "3456"], capsys)
    assert code == 2
    assert "odd" in err and "'3456'" in err


@pytest.mark.parametrize("args,message", [
    (["--num-classes", "-5"], "--num-classes must be positive, got -5"),
    (["--input-size", "100000"], "--input-size 100000 is larger than 4096"),
    (["--input-size", "16"], "too small"),
    (["-a", "eca_mobilenet_v2", "--ksize", "3557"], "takes one kernel size for every block"),
    (["-a", "resnet50", "--ksize", "3"], "no ECA layer"),
])
def test_every_bad_value_is_one_line(args, message, capsys):
    code, _, err = cli(args, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_value_of_the_wrong_type_is_argparses_one_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["paras_flops.py"])
    with pytest.raises(SystemExit) as info:
        cli(["--input-size", "abc"], capsys)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "invalid int value: 'abc'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
