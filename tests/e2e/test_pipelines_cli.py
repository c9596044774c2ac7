"""Training and evaluation through main.py with the tensor and gpu input pipelines."""
import os
import re

import main
from tests.helpers import TINY, make_image_folder
from utils.running.runner import run


def test_tensor_backend_trains_and_skips_unreadable_files(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    with open(os.path.join(data, "train", "class0", "img1.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff broken")
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--data-backend", "tensor", "--output-dir",
                str(tmp_path / "r"), *TINY, "-b", "4", data], main.RECIPE, main.BUILTIN, "")
    out = capsys.readouterr().out
    assert code == 0 and "skipped 1 unreadable images" in out


def run_cli(tmp_path, data, backend, *extra):
    return run(["-a", "eca_resnet18", "--data-backend", backend, "--output-dir", str(tmp_path / backend), *TINY,
                "-b", "4", *extra, data], main.RECIPE, main.BUILTIN, "")


def test_cli_trains_and_evaluates_with_the_gpu_pipeline(tmp_path, capsys):
    """End to end through main.py: one training epoch, then evaluating the checkpoint gives exactly the
    tensor pipeline's top-1 and loss (identical images)."""
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=3, size=(52, 44))
    with open(os.path.join(data, "train", "class0", "img1.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff broken")
    assert run_cli(tmp_path, data, "gpu", "--epochs", "1", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "data_backend=gpu" in out and "skipped 1 unreadable images" in out
    checkpoint = str(tmp_path / "gpu" / "checkpoint.pth.tar")
    results = {}
    for backend in ("gpu", "tensor"):
        assert run_cli(tmp_path / "eval", data, backend, "-e", "--resume", checkpoint) == 0
        out = capsys.readouterr().out
        assert f"data_backend={backend}" in out
        results[backend] = re.search(r"Prec@1 (\S+) Prec@5 (\S+)\n=> 9 images, loss (\S+)", out).groups()
    assert results["gpu"] == results["tensor"]
