"""Evaluating a checkpoint in the official format (module. prefix, 1000-class fc, optimizer state,
CUDA-less load, wrong `arch` label) on a tiny val folder through main.py's driver, in this process."""
import csv
import json
import os

import torch
from PIL import Image

import main
from models import create_model
from tests.helpers import make_image_folder
from utils.data.pil import eval_transform
from utils.running.runner import run


def run_main(argv, capsys):
    code = run(argv, main.RECIPE, main.BUILTIN, "")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def save_official_checkpoint(path, model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # gives the optimizer momentum buffers, as in a real checkpoint
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 100, "arch": "se_resnet50", "state_dict": state, "best_prec1": torch.tensor(70.9),
                "optimizer": optimizer.state_dict()}, path)


def test_official_checkpoint_predictions_equal_direct_forward(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("eca_resnet18", k_size="3577", num_classes=1000).eval()
    for m in model.modules():  # non-trivial BN statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = tmp_path / "eca_resnet18_k3577.pth.tar"
    save_official_checkpoint(ckpt, model)
    data = make_image_folder(tmp_path / "data", n_classes=3, val_per_class=3, splits=("val",))
    preds, out = tmp_path / "pred.csv", tmp_path / "run"
    code, stdout, stderr = run_main(["-e", "--resume", str(ckpt), "--predictions", str(preds), "-b", "4", "-j", "0",
                                     "--no-progress", "--output-dir", str(out), "--cpu", data], capsys)
    assert code == 0, stderr
    assert "=> eca_resnet18 k_size=3577 classes=1000" in stdout  # arch read from the tensors, not the wrong label
    rows = list(csv.DictReader(open(preds)))
    assert len(rows) == 9
    transform = eval_transform(224, 256)
    model.eval()
    correct1 = 0
    for row in rows:
        image = Image.open(os.path.join(data, "val", row["path"])).convert("RGB")
        with torch.no_grad():
            logits = model(transform(image)[None])
        expected = logits.topk(5).indices[0].tolist()
        assert [int(row[f"top{k}"]) for k in range(1, 6)] == expected, row
        target = int(row["path"].split("/")[0].replace("class", ""))
        assert int(row["target"]) == target
        correct1 += expected[0] == target
    summary = json.load(open(out / "eval_results.json"))
    assert summary["count"] == 9 and summary["num_classes"] == 1000
    assert abs(summary["top1"] - 100.0 * correct1 / 9) < 1e-9
    assert f" * Prec@1 {summary['top1']:.3f} Prec@5 {summary['top5']:.3f}" in stdout


def test_given_ksize_disagreeing_with_checkpoint_is_an_error(tmp_path, capsys):
    model = create_model("eca_resnet18", k_size="3577", num_classes=10)
    ckpt = tmp_path / "w.pth.tar"
    save_official_checkpoint(ckpt, model)
    data = make_image_folder(tmp_path / "data", splits=("val",))
    code, _, stderr = run_main(["-e", "--resume", str(ckpt), "--ksize", "3333", "-j", "0", data], capsys)
    assert code == 2
    assert "3333" in stderr and "3577" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_pretrained_initialises_training_from_file(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("eca_resnet18", num_classes=3)
    ckpt = tmp_path / "w.pth.tar"
    save_official_checkpoint(ckpt, model)
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    code, _, stderr = run_main(["-a", "eca_resnet18", "--pretrained", str(ckpt), "--epochs", "1", "--lr", "0",
                                "--wd", "0", "-b", "4", "--crop-size", "32", "--val-resize", "36", "-j", "0",
                                "--no-progress", "--output-dir", str(out), data], capsys)
    assert code == 0, stderr
    saved = torch.load(out / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    # lr 0 keeps the weights: they must be the file's (BN statistics move, so compare conv weights).
    assert torch.equal(saved["conv1.weight"], model.state_dict()["conv1.weight"])
