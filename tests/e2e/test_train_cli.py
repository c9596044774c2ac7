"""The real CLI end to end on generated tiny data: training, checkpoints, exact resume, recipes."""
import csv
import json
import os

import torch

import light_main
import main
from tests.helpers import TINY, make_image_folder, parsed_flags, run_script
from utils.running.runner import run


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_two_epochs_through_cli(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=24)
    out = tmp_path / "run"
    result = run_script("main.py", ["-a", "eca_resnet18", "--epochs", "3", "--seed", "0", "--lr", "0.05",
                                    "--output-dir", str(out), *TINY[:-1], data])
    assert result.returncode == 0, result.stderr
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "metrics.csv", "args.json"):
        assert (out / name).exists(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out)), "no TensorBoard events"
    state = load(out / "checkpoint.pth.tar")
    for key in ("epoch", "arch", "state_dict", "best_prec1", "optimizer", "scaler", "k_size", "num_classes",
                "class_names", "args", "epoch_row"):
        assert key in state, key
    for key in ("scheduler", "rng", "saved_at"):  # never read on resume, so not written
        assert key not in state, key
    assert state["epoch"] == 3 and state["arch"] == "eca_resnet18" and state["k_size"] == [3, 5, 7, 7]
    assert state["class_names"] == ["class0", "class1", "class2"]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # Three colour classes: chance is 33%. The colours are trivially separable.
    assert state["best_prec1"] > 60.0, rows
    assert json.load(open(out / "args.json"))["arch"] == "eca_resnet18"
    assert " * Prec@1" in result.stdout


def test_resume_gives_identical_weights(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=8, val_per_class=2)
    common = ["-a", "eca_resnet18", "--seed", "3", *TINY, "-j", "2", data]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(["--epochs", "2", "--output-dir", str(straight), *common], main.RECIPE, main.BUILTIN, "") == 0
    assert run(["--epochs", "1", "--output-dir", str(split), *common], main.RECIPE, main.BUILTIN, "") == 0
    assert run(["--epochs", "2", "--output-dir", str(split), "--resume", str(split / "checkpoint.pth.tar"),
                *common], main.RECIPE, main.BUILTIN, "") == 0
    a, b = load(straight / "checkpoint.pth.tar"), load(split / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


def test_light_main_has_the_mobilenet_recipe():
    args = parsed_flags(light_main.RECIPE, ["/data"])
    assert (args.arch, args.epochs, args.batch_size, args.lr, args.weight_decay, args.lr_schedule, args.lr_gamma) \
        == ("eca_mobilenet_v2", 400, 96, 0.045, 4e-5, "exp", 0.98)
    args = parsed_flags(main.RECIPE, ["/data"])
    assert (args.arch, args.epochs, args.batch_size, args.lr, args.weight_decay, args.lr_schedule, args.lr_step,
            args.lr_gamma, args.momentum) == ("eca_resnet50", 100, 256, 0.1, 1e-4, "step", 30, 0.1, 0.9)


def test_official_flags_parse_with_their_meaning():
    args = parsed_flags(main.RECIPE, 
        ["-a", "eca_resnet101", "--ksize", "3357", "-j", "4", "--epochs", "90", "--start-epoch", "5", "-b", "512",
         "--learning-rate", "0.2", "--momentum", "0.8", "--weight-decay", "5e-5", "-p", "50", "--resume", "x",
         "-e", "--pretrained", "w.pth", "--world-size", "2", "--dist-url", "tcp://h:1", "--dist-backend", "gloo",
         "--seed", "7", "--gpu", "1", "--action", "try1", "/data"])
    assert (args.arch, args.ksize, args.workers, args.epochs, args.start_epoch, args.batch_size, args.lr) == \
        ("eca_resnet101", "3357", 4, 90, 5, 512, 0.2)
    assert (args.momentum, args.weight_decay, args.print_freq, args.resume, args.evaluate, args.pretrained) == \
        (0.8, 5e-5, 50, "x", True, "w.pth")
    assert (args.world_size, args.dist_url, args.dist_backend, args.seed, args.gpu, args.action, args.data) == \
        (2, "tcp://h:1", "gloo", 7, 1, "try1", "/data")


def test_light_main_trains_on_dummy_data(tmp_path):
    out = tmp_path / "run"
    assert run(["--dummy", "--num-classes", "5", "--epochs", "1", "-b", "4", "--crop-size", "32", "--val-resize",
                "36", "-j", "0", "--no-progress", "--output-dir", str(out)], light_main.RECIPE, light_main.BUILTIN,
               "") == 0
    state = load(out / "checkpoint.pth.tar")
    assert state["arch"] == "eca_mobilenet_v2" and state["num_classes"] == 5
    assert state["args"]["lr"] == 0.045 and state["args"]["weight_decay"] == 4e-5


def test_bf16_autocast_on_cpu(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--amp", "bf16", "--output-dir", str(out), *TINY, data],
               main.RECIPE, main.BUILTIN, "")
    assert code == 0
    state = load(out / "checkpoint.pth.tar")
    assert state["args"]["amp"] == "bf16"
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_compile_trains_and_saves_plain_keys(tmp_path):
    """torch.compile through the CLI. aot_eager traces forward and backward through dynamo and AOTAutograd
    like inductor does, without inductor's C++ code generation (over a minute on 2 cores)."""
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    code = run(["-a", "eca_resnet18", "--epochs", "1", "--compile", "--compile-backend", "aot_eager",
                "--output-dir", str(out), *TINY, data], main.RECIPE, main.BUILTIN, "")
    assert code == 0
    keys = list(load(out / "checkpoint.pth.tar")["state_dict"])
    assert keys == list(main_model_keys())


def main_model_keys():
    from models import create_model

    return create_model("eca_resnet18", num_classes=3).state_dict().keys()


def test_no_data_argument_uses_the_builtin_dataset(tmp_path, monkeypatch, capsys):
    """`python main.py -a eca_resnet18` with no DIR: generates the demo set once, then trains on it with the
    small-image defaults (one epoch here, on a smaller demo set: generating the full one is
    tests/data/test_builtin_dataset.py's, training on it the quick start's)."""
    import functools

    from utils.data import builtin_dataset

    monkeypatch.setenv("ECA_DATA_CACHE", str(tmp_path / "cache"))
    small = functools.partial(builtin_dataset.ensure_builtin_dataset, train_per_class=7, val_per_class=2)
    monkeypatch.setattr(builtin_dataset, "ensure_builtin_dataset", small)
    out = tmp_path / "run"
    assert run(["-a", "eca_resnet18", "--epochs", "1", "--no-progress", "--output-dir", str(out)], main.RECIPE,
               main.BUILTIN, "") == 0
    assert "built-in demo dataset" in capsys.readouterr().err
    state = load(out / "checkpoint.pth.tar")
    assert state["num_classes"] == 10 and state["args"]["crop_size"] == 56 and state["args"]["batch_size"] == 64
    assert state["args"]["data"] == str(tmp_path / "cache") and state["args"]["train_images"] == 70
    assert (tmp_path / "cache" / "train" / "circle").is_dir()


def test_best_checkpoint_exists_even_at_zero_accuracy(tmp_path, monkeypatch):
    """A first epoch at 0% top-1 is still the best so far (found by CI: 3 tiny classes can give 0%)."""
    import utils.training.trainer

    real = utils.training.trainer.evaluate

    def zero_accuracy(*args, **kwargs):
        metrics, rows = real(*args, **kwargs)
        return {**metrics, "top1": 0.0}, rows

    monkeypatch.setattr(utils.training.trainer, "evaluate", zero_accuracy)
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    assert run(["-a", "eca_resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data],
               main.RECIPE, main.BUILTIN, "") == 0
    assert (out / "model_best.pth.tar").exists()


def test_a_seed_starts_from_the_official_codes_initial_weights(tmp_path):
    """`--seed S` builds the model right after torch.manual_seed(S), as the official main.py does, so both start
    from the same weights (tests/models compares the architectures). lr 0 keeps the weights where they began
    (BatchNorm's running statistics still move, so only the learned tensors are compared)."""
    from models import create_model

    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    assert run(["-a", "eca_resnet18", "--ksize", "3333", "--epochs", "1", "--seed", "11", "--lr", "0", "--wd", "0",
                "--output-dir", str(out), *TINY, data], main.RECIPE, main.BUILTIN, "") == 0
    trained = load(out / "checkpoint.pth.tar")["state_dict"]
    torch.manual_seed(11)
    official_start = create_model("eca_resnet18", k_size="3333", num_classes=3).state_dict()
    learned = [key for key in official_start if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) > 60
    for key in learned:
        assert torch.equal(trained[key], official_start[key]), key
    torch.manual_seed(12)
    assert not torch.equal(create_model("eca_resnet18", k_size="3333", num_classes=3).state_dict()["fc.weight"],
                           trained["fc.weight"])  # another seed, other weights: the comparison can fail
