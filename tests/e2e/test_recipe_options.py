"""The training options of torchvision's recipes through main.py: exact resumption with all of them on, evaluation
of the moving average, --help and the improved recipe. A stop in the middle of an epoch with all of them on:
tests/e2e/test_preemption.py; two processes with mixing and the average: tests/e2e/test_distributed.py."""
import csv
import json
import os

import pytest
import torch

import main
from tests.helpers import TINY, make_image_folder, parsed_flags
from utils.running.runner import run

ALL_OPTIONS = ["--opt", "sgd_nesterov", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--model-ema",
               "--model-ema-steps", "1", "--clip-grad-norm", "1.0", "--norm-weight-decay", "0", "--auto-augment",
               "ta_wide", "--random-erase", "0.25", "--label-smoothing", "0.1", "--train-crop-size", "28",
               "--val-crop-size", "32", "--lr-warmup-epochs", "1", "--lr-warmup-decay", "0.01",
               "--lr-scheduler", "cosineannealinglr"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a, b):
    for entry in ("state_dict", "model_ema"):
        for key, value in a[entry].items():
            assert torch.equal(value, b[entry][key]), f"{entry} {key}"


@pytest.mark.parametrize("optimizer", ["sgd_nesterov", "adamw"])
def test_resume_is_exact_with_every_option_on(tmp_path, optimizer):
    data = make_image_folder(tmp_path / "data", train_per_class=8, val_per_class=2)
    options = [*ALL_OPTIONS[:1], optimizer, *ALL_OPTIONS[2:]]
    common = ["-a", "eca_resnet18", "--seed", "4", "--lr", "0.01", *TINY, "-j", "2", *options, data]
    straight, split = tmp_path / "straight", tmp_path / "split"
    # Two epochs straight, and one then a resume for the second: one epoch boundary crossed by a restart.
    assert run(["--epochs", "2", "--output-dir", str(straight), *common], main.RECIPE, main.BUILTIN, "") == 0
    assert run(["--epochs", "1", "--output-dir", str(split), *common], main.RECIPE, main.BUILTIN, "") == 0
    assert run(["--epochs", "2", "--output-dir", str(split), "--resume", "auto", *common], main.RECIPE, main.BUILTIN,
               "") == 0
    a, b = load(straight / "checkpoint.pth.tar"), load(split / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 2 and a["args"]["opt"] == optimizer
    assert_same_state(a, b)
    rows = list(csv.DictReader(open(straight / "metrics.csv")))
    assert {"ema_val_top1", "ema_val_loss"} <= set(rows[0]) and len(rows) == 2


def test_evaluate_either_the_model_or_its_moving_average(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", train_per_class=8, val_per_class=3)  # 3 steps: the average lags
    out = tmp_path / "run"
    assert run(["-a", "resnet18", "--epochs", "1", "--lr", "0.05", "--model-ema", "--model-ema-steps", "1",
                "--output-dir", str(out), *TINY, data], main.RECIPE, main.BUILTIN, "") == 0
    results = {}
    for flags in ([], ["--model-ema"]):
        target = tmp_path / ("ema" if flags else "model")
        assert run(["-e", "--resume", str(out / "checkpoint.pth.tar"), *flags, *TINY, "--output-dir", str(target),
                    data], main.RECIPE, main.BUILTIN, "") == 0
        results[bool(flags)] = json.load(open(target / "eval_results.json"))
    assert results[False]["count"] == results[True]["count"] == 9
    assert results[False]["loss"] != results[True]["loss"]  # other weights
    plain = tmp_path / "plain"
    assert run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(plain), *TINY, data], main.RECIPE,
               main.BUILTIN, "") == 0
    capsys.readouterr()
    code = run(["-e", "--resume", str(plain / "checkpoint.pth.tar"), "--model-ema", *TINY, data], main.RECIPE,
               main.BUILTIN, "")
    err = capsys.readouterr().err
    assert code == 2 and "holds no 'model_ema'" in err and len(err.strip().splitlines()) == 1


def test_help_groups_the_recipe_options(capsys):
    with pytest.raises(SystemExit) as info:
        run(["--help"], main.RECIPE, main.BUILTIN, main.__doc__)
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "python main.py -a eca_resnet50 --ksize 3557 /data/ILSVRC2012" in text  # the usage examples as written
    section = text[text.index("training recipe options"):text.index("output:")]
    for flag in ("--auto-augment", "--random-erase", "--mixup-alpha", "--cutmix-alpha", "--model-ema",
                 "--model-ema-steps", "--model-ema-decay", "--clip-grad-norm", "--norm-weight-decay", "--opt"):
        assert flag in section, flag
    for flag in ("--train-crop-size", "--val-crop-size", "--val-resize-size", "--lr-scheduler", "--lr-warmup-epochs",
                 "--model"):
        assert flag in text, flag
    assert os.path.exists(os.path.join(os.path.dirname(main.__file__), "scripts", "recipes",
                                       "eca_resnet50_improved.sh"))


def test_improved_recipe_passes_torchvisions_hyperparameters(tmp_path):
    """The recipe's commands, recorded by stand-ins for torchrun and python, and parsed by main.py's own parser."""
    from tests.e2e.test_scripts import run_recipe_with_shims
    
    train, evaluate = run_recipe_with_shims(tmp_path, "eca_resnet50_improved.sh")
    args = parsed_flags(main.RECIPE, train.split()[3:])  # after "torchrun --nproc_per_node=8 main.py"
    assert (args.arch, args.ksize, args.epochs, args.batch_size, args.lr, args.lr_scheduler) == \
        ("eca_resnet50", "3557", 600, 1024, 0.5, "cosineannealinglr")
    assert (args.warmup_epochs, args.lr_warmup_decay, args.auto_augment, args.random_erase, args.weight_decay) == \
        (5.0, 0.01, "ta_wide", 0.1, 2e-5)
    assert (args.norm_weight_decay, args.label_smoothing, args.mixup_alpha, args.cutmix_alpha) == (0.0, 0.1, 0.2, 1.0)
    assert (args.train_crop_size, args.val_resize, args.val_crop_size, args.model_ema, args.resume) == \
        (176, 232, 224, True, "auto")
    assert args.output_dir == "runs/eca_resnet50_improved"
    assert "--model-ema" in evaluate and "--val-resize 232" in evaluate
