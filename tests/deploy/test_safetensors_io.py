"""utils/deploy/safetensors_io.py, scripts/convert_weights.py and .safetensors in models.weights."""
import json
import shutil
import sys

import pytest
import torch
from torch import nn

import main
from models import WeightsFile, create_model
from models.weights import CheckpointError
from scripts import convert_weights
from tests.helpers import TINY, make_image_folder
from utils.deploy import safetensors_io as st
from utils.running.entry import run_cli
from utils.running.runner import run


def trained_like(arch="eca_resnet18", num_classes=5, seed=0):
    """A model with one SGD step taken (so the optimizer has momentum buffers) and its optimizer."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-format file as the released ones are: DataParallel keys, a wrong `arch` label, a tensor
    best_prec1, the optimizer state."""
    model, optimizer = trained_like()
    path = str(tmp_path_factory.mktemp("official") / "eca_resnet18.pth.tar")
    torch.save({"epoch": 7, "arch": "se_resnet50", "best_prec1": torch.tensor(41.25),
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict()}, path)
    return path


def test_official_to_safetensors_to_official_is_bit_for_bit(official, tmp_path):
    portable, back = str(tmp_path / "w.safetensors"), str(tmp_path / "back.pth.tar")
    assert st.convert(official, portable) == "safetensors"
    assert st.convert(portable, back) == "official"
    before, after = (torch.load(p, map_location="cpu", weights_only=True) for p in (official, back))
    assert set(after) == set(before) == {"epoch", "arch", "state_dict", "best_prec1", "optimizer"}
    assert list(after["state_dict"]) == list(before["state_dict"])  # same keys, same order, module. prefix
    for key, tensor in before["state_dict"].items():
        assert after["state_dict"][key].dtype == tensor.dtype, key
        assert torch.equal(after["state_dict"][key], tensor), key
    assert after["epoch"] == 7 and after["best_prec1"] == 41.25
    assert after["arch"] == "eca_resnet18"  # read from the tensors, not the file's wrong label
    assert after["optimizer"]["param_groups"] == before["optimizer"]["param_groups"]  # hyperparameters kept
    assert after["optimizer"]["state"] == {}  # momentum buffers are not weights


def test_the_official_loader_takes_the_converted_back_file(official, tmp_path):
    portable, back = str(tmp_path / "w.safetensors"), str(tmp_path / "back.pth.tar")
    st.convert(official, portable)
    st.convert(portable, back)
    checkpoint = torch.load(back, map_location="cpu", weights_only=True)
    # What the official main.py does with -e --resume (on the CPU here).
    model = nn.DataParallel(create_model("eca_resnet18", k_size=[3, 5, 7, 7], num_classes=5))
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert checkpoint["epoch"] == 7 and float(checkpoint["best_prec1"]) == 41.25


def test_the_metadata(official, tmp_path):
    portable = str(tmp_path / "w.safetensors")
    metadata = st.to_safetensors(official, portable)
    from safetensors import safe_open

    with safe_open(portable, framework="pt") as f:
        assert f.metadata() == metadata
        assert not any(key.startswith("module.") for key in f.keys())
    assert metadata["format"] == "eca-net-weights" and metadata["format_version"] == "1"
    assert metadata["arch"] == "eca_resnet18" and metadata["k_size"] == "3,5,7,7" and metadata["num_classes"] == "5"
    assert metadata["epoch"] == "7" and float(metadata["best_prec1"]) == 41.25


@pytest.mark.parametrize("k_size, written", [(None, ""), (5, "5"), ("adaptive", "adaptive")])
def test_mobilenet_kernels_are_written_in_their_familys_form(k_size, written, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.pth"
    torch.save(create_model("eca_mobilenet_v2", k_size=k_size, num_classes=3).state_dict(), path)  # bare state_dict
    metadata = st.to_safetensors(str(path), str(tmp_path / "m.safetensors"))
    assert metadata["k_size"] == written and metadata["arch"] == "eca_mobilenet_v2"
    assert WeightsFile.read(str(tmp_path / "m.safetensors")).kernels("eca_mobilenet_v2") == k_size


def test_our_checkpoints_keep_their_class_names(tmp_path):
    model, optimizer = trained_like(num_classes=3)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 2, "arch": "eca_resnet18", "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_prec1": 50.0, "class_names": ["cat", "dog", "eel"], "k_size": [3, 5, 7, 7]}, path)
    portable = str(tmp_path / "w.safetensors")
    st.convert(str(path), portable)
    weights = WeightsFile.read(portable)
    assert weights.checkpoint["class_names"] == ["cat", "dog", "eel"] and weights.num_classes == 3
    assert all(torch.equal(weights.state_dict[k], v) for k, v in model.state_dict().items())


def test_weights_file_reads_safetensors_by_extension_and_by_content(official, tmp_path):
    portable = str(tmp_path / "w.safetensors")
    st.to_safetensors(official, portable)
    disguised = str(tmp_path / "weights.bin")
    shutil.copy(portable, disguised)
    reference = WeightsFile.read(official)
    for path in (portable, disguised):
        weights = WeightsFile.read(path)
        assert weights.arch == "eca_resnet18" and weights.num_classes == 5
        assert weights.kernels("eca_resnet18") == [3, 5, 7, 7]
        assert weights.state_dict.keys() == reference.state_dict.keys()
        assert all(torch.equal(weights.state_dict[k], v) for k, v in reference.state_dict.items())
    assert not st.is_safetensors(official)
    # pretrained= (torch.hub, --pretrained) takes the file too
    model = create_model("eca_resnet18", num_classes=5, pretrained=portable)
    assert torch.equal(model.fc.weight, reference.state_dict["fc.weight"])


def test_the_label_breaks_ties_as_a_checkpoints_arch_does(tmp_path):
    # SE-Var1 has no tensors of its own: its files are ResNet-50's, and only the label tells them apart.
    torch.manual_seed(0)
    path = tmp_path / "v1.pth"
    with torch.device("meta"):
        shapes = create_model("se_var1_resnet18", num_classes=3).state_dict()
    torch.save({"arch": "se_var1_resnet18", "state_dict": {k: torch.zeros(v.shape, dtype=v.dtype)
                                                          for k, v in shapes.items()}}, path)
    portable = str(tmp_path / "v1.safetensors")
    assert st.to_safetensors(str(path), portable)["arch"] == "se_var1_resnet18"
    assert WeightsFile.read(portable).arch == "se_var1_resnet18"


def test_damaged_files_are_checkpoint_errors(official, tmp_path):
    portable = tmp_path / "w.safetensors"
    st.to_safetensors(official, str(portable))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(portable.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable .safetensors file"):
        WeightsFile.read(str(truncated))


def cli(argv, capsys):
    code = run_cli(convert_weights.main, argv, prog="convert_weights.py")
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_cli_converts_both_ways(official, tmp_path, capsys):
    code, printed, _ = cli([official, str(tmp_path / "w.safetensors")], capsys)
    assert code == 0 and ".safetensors" in printed
    code, printed, _ = cli([str(tmp_path / "w.safetensors"), str(tmp_path / "w.pth.tar")], capsys)
    assert code == 0 and "official" in printed


def test_cli_errors_are_one_line_exit_2(official, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    portable = str(tmp_path / "w.safetensors")
    st.to_safetensors(official, portable)
    cases = [
        ([str(tmp_path / "missing.pth.tar"), str(tmp_path / "o.safetensors")], "does not exist"),
        ([official, str(tmp_path / "o.pth.tar")], "must end in .safetensors"),
        ([portable, str(tmp_path / "o2.safetensors")], "already a .safetensors"),
        ([official, str(tmp_path / "a_file" / "o.safetensors")], "OUT "),
        ([official, str(tmp_path)], "is a folder"),
        ([official, official], "OUT is IN"),
    ]
    for argv, words in cases:
        code, _, err = cli(argv, capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("convert_weights.py: error: ") and words in err[0], err
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    for argv in ([official, str(tmp_path / "o3.safetensors")], [portable, str(tmp_path / "o3.pth.tar")]):
        code, _, err = cli(argv, capsys)
        assert code == 2 and len(err) == 1 and "pip install -r requirements-export.txt" in err[0], err


def test_evaluating_a_safetensors_file_gives_the_checkpoints_result(official, tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", n_classes=3, train_per_class=2, val_per_class=4)
    model, _ = trained_like(num_classes=3)
    checkpoint = tmp_path / "eca_resnet18.pth.tar"
    torch.save({"epoch": 1, "arch": "eca_resnet18", "best_prec1": 0.0,
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, checkpoint)
    portable = tmp_path / "eca_resnet18.safetensors"
    st.to_safetensors(str(checkpoint), str(portable))
    results = {}
    for name, path in (("pth", checkpoint), ("safetensors", portable)):
        out = tmp_path / f"eval_{name}"
        code = run(["-e", "--resume", str(path), *TINY, "--output-dir", str(out), data], main.RECIPE, main.BUILTIN, "")
        assert code == 0, capsys.readouterr().err
        with open(out / "eval_results.json") as f:
            results[name] = json.load(f)
    assert results["safetensors"]["count"] == results["pth"]["count"] == 12
    for key in ("top1", "top5", "loss"):
        assert results["safetensors"][key] == results["pth"][key], key
    assert results["safetensors"]["arch"] == "eca_resnet18"
