"""models/weights.py: reading checkpoints safely, unwrapping them, and telling which model they are."""
import os

import pytest
import torch

from models import create_model
from models.weights import (CheckpointError, WeightsFile, infer_arch, load_strict, read_checkpoint,
                            strip_wrapper_prefixes)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_are_stripped_however_nested(prefix):
    state = create_model("eca_resnet18", num_classes=4).state_dict()
    stripped = strip_wrapper_prefixes({prefix + k: v for k, v in state.items()})
    assert list(stripped) == list(state)


@pytest.mark.parametrize("arch,k_size", [("eca_resnet18", "3577"), ("eca_resnet50", "3335"), ("resnet34", None),
                                         ("se_resnet50", None), ("eca_ns_resnet50", "3333"),
                                         ("eca_mobilenet_v2", None), ("eca_mobilenet_v2", 5)])
def test_arch_kernels_and_classes_are_read_from_the_tensors(arch, k_size, tmp_path):
    model = create_model(arch, k_size=k_size, num_classes=11)
    path = tmp_path / "w.pth.tar"
    torch.save({"arch": "se_resnet50", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    weights = WeightsFile.read(str(path))
    assert weights.arch == arch and weights.num_classes == 11
    rebuilt = create_model(arch, k_size=weights.kernels(arch), num_classes=11)
    load_strict(rebuilt, weights.state_dict, str(path))
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))


def test_unknown_tensors_match_no_model():
    assert infer_arch({"conv1.weight": torch.zeros(1)}) is None


def test_strict_load_names_the_mismatched_tensors(tmp_path):
    state = create_model("eca_resnet18", k_size="3333", num_classes=3).state_dict()
    with pytest.raises(CheckpointError, match=r"layer2\.0\.eca\.conv\.weight \(file \[1, 1, 3\] vs model \[1, 1, 5\]"):
        load_strict(create_model("eca_resnet18", k_size="3577", num_classes=3), state, "w.pth.tar")


def test_files_that_are_not_checkpoints_say_so(tmp_path):
    (tmp_path / "random.pth.tar").write_bytes(os.urandom(4096))
    (tmp_path / "text.pth.tar").write_text("hello")
    (tmp_path / "bytes.pth.tar").write_bytes(bytes(range(256)) * 4)
    for name in ("random.pth.tar", "text.pth.tar", "bytes.pth.tar"):
        with pytest.raises(CheckpointError, match="is not a checkpoint") as info:
            read_checkpoint(str(tmp_path / name))
        message = str(info.value)
        assert "could run code" not in message and "weights_only" not in message, message  # no advice to unpickle
    assert "Unsupported operand 0" in message  # the unpickler's own reason is kept
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(str(tmp_path))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(str(tmp_path / "list.pth"))


def test_the_arch_label_decides_between_models_with_the_same_tensors(tmp_path):
    """SE-Var1 has no tensors of its own: its keys are ResNet-50's. The checkpoint's `arch` field tells them
    apart when it fits the tensors (and is ignored when it does not: official files mislabel)."""
    path = tmp_path / "w.pth.tar"
    state = create_model("se_var1_resnet50", num_classes=5).state_dict()
    torch.save({"arch": "se_var1_resnet50", "state_dict": state}, path)
    assert WeightsFile.read(str(path)).arch == "se_var1_resnet50"
    torch.save({"state_dict": state}, path)
    assert WeightsFile.read(str(path)).arch == "resnet50"  # no label: the first model with these tensors
    torch.save({"arch": "eca_resnet50", "state_dict": state}, path)
    assert WeightsFile.read(str(path)).arch == "resnet50"  # a label that does not fit is not believed
