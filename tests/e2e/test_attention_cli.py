"""--log-attention through the CLI (every input pipeline), and scripts/inspect_attention.py."""
import os

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import main
from models import create_model
from tests.helpers import TINY, make_image_folder, run_script
from utils.running.runner import run


def test_log_attention_writes_tensorboard(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    flags = [f for f in TINY if f != "--no-tensorboard"]
    assert run(["-a", "eca_resnet18", "--epochs", "2", "--log-attention", "--output-dir", str(out), *flags, data],
               main.RECIPE, main.BUILTIN, "") == 0
    events = EventAccumulator(str(out), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "attention_gates/layer3.1.eca" in tags["histograms"]
    assert len(events.Histograms("attention_gates/layer3.1.eca")) == 2  # one per epoch
    assert "attention_kernel/layer4.0.eca/tap6" in tags["scalars"]
    assert "val/top1" in tags["scalars"]


def test_inspect_script_prints_and_plots(tmp_path):
    torch.manual_seed(0)
    model = create_model("eca_resnet34", num_classes=3)
    path = tmp_path / "w.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    data = make_image_folder(tmp_path / "data", val_per_class=2, splits=("val",))
    png = tmp_path / "att.png"
    result = run_script("scripts/inspect_attention.py", [str(path), "--data", data, "--images", "4", "--crop-size",
                                                         "32", "--val-resize", "36", "--png", str(png)])
    assert result.returncode == 0, result.stderr
    assert "eca_resnet34: 16 ECA layers" in result.stdout
    first = " ".join(f"{v:+.3f}" for v in model.layer1[0].eca.conv.weight.flatten().tolist())
    assert first in result.stdout
    assert "channel gates" in result.stdout and os.path.getsize(png) > 1000


def test_log_attention_with_the_gpu_pipeline(tmp_path):
    """The gpu pipeline's batches reach the attention logger decoded (it used to crash after the first epoch
    with "expected Tensor ... got EncodedImage")."""
    data = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    out = tmp_path / "run"
    flags = [f for f in TINY if f != "--no-tensorboard"]
    assert run(["-a", "eca_resnet18", "--epochs", "2", "--log-attention", "--data-backend", "gpu", "--output-dir",
                str(out), *flags, data], main.RECIPE, main.BUILTIN, "") == 0
    events = EventAccumulator(str(out), size_guidance={"histograms": 0})
    events.Reload()
    assert len(events.Histograms("attention_gates/layer3.1.eca")) == 2
