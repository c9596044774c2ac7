"""Training and evaluation facing unreadable images, unusual JPEGs and a diverging loss."""
import os

import torch
from PIL import Image

import main
from models import create_model
from tests.helpers import TINY, make_image_folder
from utils.running.runner import run


def corrupt(path):
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not really a JPEG")


def test_unreadable_training_images_are_skipped_and_counted(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    corrupt(os.path.join(data, "train", "class1", "img0.jpg"))
    corrupt(os.path.join(data, "train", "class2", "img3.jpg"))
    out = tmp_path / "run"
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, "-b", "4", data],
               main.RECIPE, main.BUILTIN, "")  # batch 4 divides the 12 images: none dropped
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipped 2 unreadable images" in captured.out
    assert "class1/img0.jpg" in captured.err and "class2/img3.jpg" in captured.err
    assert "skipped_images" in open(out / "metrics.csv").readline()


def test_too_many_unreadable_images_stop_the_run(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    corrupt(os.path.join(data, "train", "class1", "img0.jpg"))
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--max-skipped", "0", "--output-dir", str(tmp_path / "r"),
                *TINY, "-b", "4", data], main.RECIPE, main.BUILTIN, "")  # batch 4: no image dropped
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3 and "--max-skipped 0" in err


def test_unreadable_val_image_is_an_error_unless_skip_corrupt(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", val_per_class=3, splits=("val",))
    bad = os.path.join(data, "val", "class0", "img1.jpg")
    corrupt(bad)
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", num_classes=3).state_dict()}, weights)
    for workers in ("0", "1"):  # the error must read the same when it comes from a loader worker
        code = run(["-e", "--resume", str(weights), *TINY, "-j", workers, "--output-dir", str(tmp_path / "e"), data],
                   main.RECIPE, main.BUILTIN, "")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 3
        assert err[-1].startswith("main.py: error: cannot decode") or "cannot decode" in err[-1], err
        assert bad in err[-1] and "--skip-corrupt" in err[-1]
    code = run(["-e", "--resume", str(weights), *TINY, "--skip-corrupt", "--output-dir", str(tmp_path / "e"), data],
               main.RECIPE, main.BUILTIN, "")
    out = capsys.readouterr().out
    assert code == 0 and "=> 8 images" in out and "1 unreadable images were left out" in out


def test_cmyk_grayscale_and_png_named_jpeg_decode(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=3, val_per_class=2)
    for split in ("train", "val"):
        folder = os.path.join(data, split, "class0")
        Image.new("CMYK", (40, 40), (0, 200, 200, 0)).save(os.path.join(folder, "cmyk.JPEG"))
        Image.new("L", (40, 40), 128).save(os.path.join(folder, "gray.JPEG"))
        Image.new("RGB", (40, 40), (200, 0, 0)).save(os.path.join(folder, "png_inside.JPEG"), format="PNG")
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--output-dir", str(tmp_path / "r"), *TINY, data],
               main.RECIPE, main.BUILTIN, "")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "unreadable" not in captured.out + captured.err
    assert "=> 12 images" not in captured.out  # training run: evaluation summary is per epoch
    assert "Prec@1" in captured.out


def test_diverging_loss_stops_without_touching_best(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    common = ["-a", "eca_resnet18", "--output-dir", str(out), *TINY, "-b", "4", "--seed", "0", data]
    assert run(["--epochs", "1", *common], main.RECIPE, main.BUILTIN, "") == 0
    best = (out / "model_best.pth.tar").read_bytes()
    last = (out / "checkpoint.pth.tar").read_bytes()
    capsys.readouterr()
    code = run(["--epochs", "2", "--lr", "1e30", "--resume", str(out / "checkpoint.pth.tar"), *common],
               main.RECIPE, main.BUILTIN, "")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3
    assert "epoch 1" in err and "lr 1e+30" in err
    assert (out / "model_best.pth.tar").read_bytes() == best
    assert (out / "checkpoint.pth.tar").read_bytes() == last


def test_evaluation_error_in_a_loader_worker_exits_instead_of_hanging(tmp_path):
    """An error raised while loader workers run must not leave them alive: the process would then wait
    for them forever at exit (seen before the loops shut their workers down in a finally)."""
    from tests.helpers import run_script

    data = make_image_folder(tmp_path / "data", val_per_class=3, splits=("val",))
    corrupt(os.path.join(data, "val", "class1", "img2.jpg"))
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", num_classes=3).state_dict()}, weights)
    result = run_script("main.py", ["-e", "--resume", str(weights), *TINY, "-j", "2", "--output-dir",
                                    str(tmp_path / "e"), data], timeout=180)
    assert result.returncode == 3
    assert "cannot decode" in result.stderr.strip().splitlines()[-1]
