"""scripts/inspect_attention.py in this process: each ECA layer's kernel from a checkpoint (official format, arch read
from the tensors), gate statistics on validation images, the picture, and its errors before any work."""
import os

import pytest
import torch

from models import create_model
from scripts import inspect_attention
from tests.helpers import make_image_folder
from utils.running.entry import run_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("eca_resnet34", num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "w.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model


def cli(argv, capsys):
    code = run_cli(inspect_attention.main, argv, prog="inspect_attention.py")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_kernels_gates_and_the_picture(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    data = make_image_folder(tmp_path / "data", val_per_class=2, splits=("val",))
    png = tmp_path / "att.png"
    code, out, err = cli([str(path), "--data", data, "--images", "4", "--crop-size", "32", "--val-resize", "36",
                          "--png", str(png)], capsys)
    assert code == 0, err
    assert "eca_resnet34: 16 ECA layers" in out
    first = " ".join(f"{v:+.3f}" for v in model.layer1[0].eca.conv.weight.flatten().tolist())
    assert first in out
    assert "channel gates on validation images: mean / std / min / max" in out
    assert os.path.getsize(png) > 1000 and f"=> wrote {png}" in out


def test_kernels_alone(checkpoint, capsys):
    path, _ = checkpoint
    code, out, _ = cli([str(path)], capsys)
    assert code == 0 and out.count(" k=") == 16 and "channel gates" not in out


@pytest.mark.parametrize("extra,message", [(["--images", "0"], "--images must be a positive integer, got 0"),
                                           (["--data", "/no/such/data"], "/no/such/data/val is missing")])
def test_bad_inputs_are_one_line_before_the_work(checkpoint, extra, message, capsys):
    path, _ = checkpoint
    code, out, err = cli([str(path), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_a_file_that_is_no_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.pth.tar"
    bad.write_text("hello")
    code, _, err = cli([str(bad)], capsys)
    assert code == 2 and "is not a checkpoint" in err and len(err.strip().splitlines()) == 1
