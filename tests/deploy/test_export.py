"""utils/deploy/export.py and scripts/export.py: export, then verify against eager before writing."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from models import ECA, create_model
from scripts import export as export_cli
from tests.helpers import ROOT, make_image_folder
from tests.models.test_official_model import OfficialFormECA  # the official eca_layer's operations
from utils.deploy import export
from utils.running.entry import run_cli

SIZE = 32
MODELS = {"eca_resnet18": 4, "eca_mobilenet_v2": 3, "se_resnet18": 5}


def perturbed(arch, num_classes, seed=0):
    """A seeded model whose BN statistics and affine parameters are not the initial ones, so that its logits
    have a trained model's spread rather than the near-zero ones of a fresh initialisation."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Official-style files ({'state_dict': {'module.' + key: tensor}}, label missing) of each model."""
    folder = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for arch, classes in MODELS.items():
        state = {"module." + k: v for k, v in perturbed(arch, classes).state_dict().items()}
        paths[arch] = str(folder / f"{arch}.pth.tar")
        torch.save({"epoch": 1, "state_dict": state, "best_prec1": 0.0}, paths[arch])
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return os.path.join(make_image_folder(tmp_path_factory.mktemp("imgs"), n_classes=3, train_per_class=0,
                                          val_per_class=2, size=(40, 48), splits=("val",)), "val")


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("arch", list(MODELS))
def test_exported_files_agree_with_eager_at_batch_1_and_8(arch, fmt, checkpoints, images, tmp_path):
    loaded = export.load_model(checkpoints[arch])
    assert loaded.arch == arch and loaded.model.state_dict().keys()  # arch and class count read from the tensors
    out = str(tmp_path / f"model.{fmt}")
    report = export.export_model(loaded.model, out, export.ExportSettings(fmt, SIZE, images=images, dynamic_batch=True,
                                                                           repeats=1))
    assert [c.batch for c in report.checks] == [1, 8]
    assert all(c.ok for c in report.checks), [c.line() for c in report.checks]
    assert all(c.max_abs_diff <= 1e-5 for c in report.checks), [c.line() for c in report.checks]
    print(arch, fmt, [f"{c.max_abs_diff:.2e}" for c in report.checks],
          f"ratio {report.speed.ratio:.2f}" if report.speed else "")
    assert os.path.getsize(out) == report.size_bytes
    assert (report.speed is not None) == (fmt == "onnx")


def test_the_official_eca_gate_exports_to_a_graph_that_verifies(tmp_path):
    model = perturbed("eca_resnet18", 4)
    for module in model.modules():
        if isinstance(module, ECA):
            module.__class__ = OfficialFormECA
    report = export.export_model(model, str(tmp_path / "official.onnx"),
                                  export.ExportSettings("onnx", SIZE, dynamic_batch=True, repeats=1))
    assert [c.batch for c in report.checks] == [1, 8] and all(c.ok for c in report.checks)


def test_a_fused_model_is_exported_in_its_reference_form_and_left_as_it_was(tmp_path):
    torch.manual_seed(0)
    model = create_model("eca_resnet18", num_classes=3, eca_impl="fused").eval()
    report = export.export_model(model, str(tmp_path / "m.pt"), export.ExportSettings("torchscript", SIZE, batch=2))
    assert [c.batch for c in report.checks] == [2] and report.checks[0].ok
    assert {m.impl for m in model.modules() if isinstance(m, ECA)} == {"fused"}


def test_a_file_that_disagrees_is_not_written(monkeypatch, tmp_path):
    other = export.export_torchscript(export.reference_form(perturbed("eca_resnet18", 4, seed=1)), SIZE)
    monkeypatch.setattr(export, "export_torchscript", lambda *a, **k: other)
    out = tmp_path / "wrong.pt"
    with pytest.raises(export.ExportError, match="does not compute the model's logits"):
        export.export_model(perturbed("eca_resnet18", 4), str(out), export.ExportSettings("torchscript", SIZE))
    assert not out.exists() and os.listdir(tmp_path) == []


def test_agreement_and_its_tolerance():
    reference = torch.tensor([[10.0, -20.0, 5.0]])
    assert export.tolerance(reference) == pytest.approx(2e-3)
    assert export.tolerance(reference / 100) == pytest.approx(1e-4)  # never below 1e-4 absolute
    assert export.agreement("onnx", reference + 1e-3, reference).ok
    assert not export.agreement("onnx", torch.zeros_like(reference), reference).ok
    assert not export.agreement("onnx", reference[:, :2], reference).ok  # a wrong shape never agrees


def cli(argv, capsys):
    code = run_cli(export_cli.main, argv, prog="export.py")
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_the_cli_exports_a_model_name_with_random_weights(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code, printed, err = cli(["mobilenet_v2", "--num-classes", "3", "--input-size", str(SIZE), "--format", "onnx",
                              "--repeats", "1", str(out)], capsys)
    assert code == 0, err
    assert "random initial weights" in printed and "onnx batch 1:" in printed and "batch 8" not in printed
    assert "onnxruntime CPU" in printed and "ratio" in printed and out.exists()


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = cli([str(tmp_path / "nope.pth.tar"), "--format", "onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("export.py: error: ") and "nope.pth.tar" in err[0]


def test_bad_format_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        export_cli.main(["eca_resnet18", "--format", "tflite", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "invalid choice: 'tflite'" in err[0]


def test_unwritable_out_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "load_model", lambda *a: pytest.fail("loaded a model before checking OUT"))
    (tmp_path / "a_file").write_text("x")
    for out in (tmp_path / "a_file" / "m.onnx", tmp_path):  # below a file; a folder
        code, _, err = cli(["eca_resnet18", "--format", "torchscript", str(out)], capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("export.py: error: OUT "), err


def test_missing_onnx_packages_name_the_requirements_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    code, _, err = cli(["eca_resnet18", "--format", "onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and len(err) == 1
    assert "onnxruntime" in err[0] and "pip install -r requirements-export.txt" in err[0]
    assert os.path.isfile(os.path.join(ROOT, "requirements-export.txt"))


def test_other_input_errors_are_one_line(tmp_path, capsys):
    for argv, words in (
        (["eca_resnet18", "--format", "onnx", "--opset", "13"], "--opset 13"),
        (["eca_resnet18", "--format", "onnx", "--input-size", "8"], "--input-size must be at least 32"),
        (["eca_resnet18", "--format", "onnx", "--images", str(tmp_path / "none")], "--images"),
        (["eca_resnet18", "-a", "resnet18", "--format", "onnx"], "contradicts"),
    ):
        code, _, err = cli([*argv, str(tmp_path / "m.onnx")], capsys)
        assert code == 2 and len(err) == 1 and words in err[0], err


def test_training_and_evaluation_never_import_the_optional_packages():
    code = ("import sys, main, light_main, models, utils.running.runner, utils.training.trainer, utils.deploy;"
            "import models.detection, tempfile, os, torch;"
            "path = os.path.join(tempfile.mkdtemp(), 'w.pth'); torch.save({'fc.weight': torch.zeros(2, 2)}, path);"
            "models.WeightsFile.read(path);"  # reading a checkpoint does not load safetensors either
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxscript', 'safetensors') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
