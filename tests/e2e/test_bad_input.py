"""Bad input: each case is one clear line on stderr, a non-zero exit, before any training starts."""
import os
import shutil
import sys

import pytest

import light_main
import main
from tests.helpers import make_image_folder
from utils.running.runner import run


@pytest.fixture()
def data(tmp_path):
    return make_image_folder(tmp_path / "data", train_per_class=2, val_per_class=1)


def run_main(argv, capsys):
    code = run(argv, main.RECIPE, main.BUILTIN, "")
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("flags,message", [
    (["-b", "0"], "--batch-size must be a positive integer, got 0"),
    (["--epochs", "-1"], "--epochs must be a positive integer, got -1"),
    (["-a", "eca_resnet5"], "Did you mean eca_resnet50"),
    (["--ksize", "3456"], "odd"),
    (["--ksize", "35"], "got 2 kernel sizes"),
    (["--resume", "/nonexistent/ckpt.pth.tar"], "no such file"),
    (["--pretrained", "/nonexistent/w.pth"], "no such file"),
    (["--pretrained"], "needs the path of a checkpoint"),
    (["-j", "-1"], "--workers must be >= 0"),
    (["--lr", "-0.1"], "--lr must be >= 0"),
    (["--crop-size", "300"], "exceeds --val-resize"),
    (["--predictions", "p.csv"], "add -e"),
    (["-a", "resnet50", "--ksize", "3557"], "no ECA layer"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--wd", "inf"], "--wd must be a finite number"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--label-smoothing", "nan"], "--label-smoothing must be a finite number"),
    (["--warmup-epochs", "6", "--epochs", "5"], "never leave the warm-up"),
    (["--start-epoch", "5", "--epochs", "1"], "nothing to train"),
    (["--lr-gamma", "0"], "--lr-gamma must be > 0"),
    (["--crop-size", "100000", "--val-resize", "100000"], "larger than 4096"),
    (["--seed", "-3"], "--seed must be in"),
    (["--dist-timeout", "0"], "--dist-timeout must be > 0"),
    (["--resume", "x", "--pretrained", "y"], "give one of them"),
    (["-b", "64"], "fewer than one batch per process"),
    (["-e"], "-e evaluates a checkpoint"),
    (["-e", "--resume", "auto"], "--resume auto continues training"),
])
def test_invalid_values_rejected_up_front(flags, message, data, tmp_path, capsys):
    code, err = run_main([*flags, "--output-dir", str(tmp_path / "run"), data], capsys)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists(), "nothing may be written for a rejected command"


@pytest.mark.parametrize("flags,message", [
    (["-b", "abc"], "argument -b/--batch-size: invalid int value: 'abc'"),
    (["--data-backend", "fast"], "argument --data-backend: invalid choice"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_argument_syntax_errors_are_one_line(flags, message, data, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["main.py"])  # argparse names the program after it
    with pytest.raises(SystemExit) as info:  # main.py: sys.exit(run(...)) ends with argparse's exit 2
        run([*flags, data], main.RECIPE, main.BUILTIN, "")
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.startswith("main.py: error: ")
    assert len(err.strip().splitlines()) == 1, err


def test_mobilenet_takes_one_kernel_size(data, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["light_main.py"])
    code = run(["--ksize", "3557", data], light_main.RECIPE, light_main.BUILTIN, "")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "eca_mobilenet_v2 takes one kernel size for every block" in err


def test_bad_arch_through_real_cli(data, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["main.py", "-a", "eca_resnet5O", data])
    code = run(sys.argv[1:], main.RECIPE, main.BUILTIN, "")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("main.py: error: unknown architecture 'eca_resnet5O'")
    assert len(err.strip().splitlines()) == 1


def _missing_data(root):
    return os.path.join(root, "nothing-here")


def _no_train(root):
    shutil.rmtree(os.path.join(root, "train"))
    return root


def _no_val(root):
    shutil.rmtree(os.path.join(root, "val"))
    return root


def _flat_val(root):
    val = os.path.join(root, "val")
    for c in os.listdir(val):
        for f in os.listdir(os.path.join(val, c)):
            shutil.move(os.path.join(val, c, f), os.path.join(val, f"{c}_{f}"))
        os.rmdir(os.path.join(val, c))
    return root


def _class_mismatch(root):
    os.rename(os.path.join(root, "val", "class2"), os.path.join(root, "val", "class9"))
    return root


def _empty_class(root):
    os.makedirs(os.path.join(root, "train", "class3"))
    os.makedirs(os.path.join(root, "val", "class3"))
    return root


def _non_image(root):
    with open(os.path.join(root, "train", "class0", "notes.txt"), "w") as f:
        f.write("not an image")
    return root


def _data_is_a_file(root):
    path = os.path.join(root, "train", "class0", "img0.jpg")
    return path


@pytest.mark.parametrize("breaker,message", [
    (_missing_data, "does not exist"),
    (_data_is_a_file, "is a file, not a folder"),
    (_no_train, "train is missing"),
    (_no_val, "val is missing"),
    (_flat_val, "val archive extracts flat"),
    (_class_mismatch, "different classes"),
    (_empty_class, "hold no images"),
    (_non_image, "are not images"),
])
def test_dataset_problems_are_one_line_errors(breaker, message, data, tmp_path, capsys):
    root = breaker(data)
    code, err = run_main(["--epochs", "1", "--output-dir", str(tmp_path / "run"), root], capsys)
    assert code == 2
    assert message in err, err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_flat_val_error_points_to_the_preparation_script(data, tmp_path, capsys):
    weights = tmp_path / "w.pth.tar"
    weights.write_bytes(b"the dataset is checked before the checkpoint is read")
    code, err = run_main(["-e", "--resume", str(weights), _flat_val(data)], capsys)
    assert code == 2 and "scripts/prepare_imagenet.py --fix-flat-val" in err and len(err.splitlines()) == 1
