"""Checkpoints under faults: bad files give clear errors, untrusted files never run code, and a
crash or a failing write never damages the checkpoint that existed before."""
import os
import subprocess
import sys

import pytest
import torch

import main
from models import create_model
from tests.helpers import ROOT, TINY, make_image_folder
from utils.training import checkpoint as ckpt
from utils.running.files import TEMP_TAG, atomic_write
from utils.running.runner import run


@pytest.fixture()
def data(tmp_path):
    return make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)


def evaluate_with(path, data, capsys, *extra):
    out = ["--output-dir", str(path.parent / "eval")]  # eval_results.json lands beside the checkpoint, not in runs/
    code = run(["-e", "--resume", str(path), *TINY, *out, *extra, data], main.RECIPE, main.BUILTIN, "")
    return code, capsys.readouterr().err.strip()


def test_truncated_checkpoint(tmp_path, data, capsys):
    path = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", num_classes=3).state_dict()}, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    code, err = evaluate_with(path, data, capsys)
    assert code == 2 and str(path) in err and "truncated" in err
    assert len(err.splitlines()) == 1


def test_not_a_checkpoint(tmp_path, data, capsys):
    path = tmp_path / "notes.pth.tar"
    path.write_text("hello")
    code, err = evaluate_with(path, data, capsys)
    assert code == 2 and str(path) in err and len(err.splitlines()) == 1


def test_other_architecture_names_tensors(tmp_path, data, capsys):
    path = tmp_path / "r34.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet34", num_classes=3).state_dict()}, path)
    code, err = evaluate_with(path, data, capsys, "-a", "eca_resnet18")
    assert code == 2 and str(path) in err
    assert "unexpected tensors" in err and "layer1.2" in err


def test_other_kernel_sizes_names_tensors(tmp_path, data, capsys):
    path = tmp_path / "k.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", k_size="3333", num_classes=3).state_dict()}, path)
    code, err = evaluate_with(path, data, capsys, "-a", "eca_resnet18", "--ksize", "3577")
    assert code == 2 and "3577" in err and "3333" in err


def test_kernel_sizes_are_read_from_the_file(tmp_path, data, capsys):
    path = tmp_path / "k.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", k_size="3333", num_classes=3).state_dict()}, path)
    code, _ = evaluate_with(path, data, capsys, "-a", "eca_resnet18")
    assert code == 0


def test_class_count_mismatch_names_tensors(tmp_path, data, capsys):
    path = tmp_path / "c.pth.tar"
    torch.save({"state_dict": create_model("eca_resnet18", num_classes=5).state_dict()}, path)
    code, err = evaluate_with(path, data, capsys, "-a", "eca_resnet18", "--num-classes", "3")
    assert code == 2 and "fc.weight" in err and "[5, 512]" in err and "[3, 512]" in err


class Payload:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, data, capsys):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth.tar"
    state = create_model("eca_resnet18", num_classes=3).state_dict()
    torch.save({"state_dict": state, "extra": Payload(str(marker))}, path, pickle_protocol=2)
    # Sanity check of the test itself: an unrestricted load does run the payload.
    probe = tmp_path / "probe"
    torch.save(Payload(str(probe)), tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe.exists()
    code, err = evaluate_with(path, data, capsys)
    assert code == 2 and "refusing to load" in err and str(path) in err
    assert not marker.exists(), "the payload ran"


KILL_DURING_WRITE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from utils.running.files import atomic_write
def dying_save(obj, f, *a, **k):
    f.write(b"PK\\x03\\x04 partial bytes of a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
with atomic_write(sys.argv[2]) as f:
    dying_save({"epoch": 2, "state_dict": {}}, f)
"""


def save(obj, path):
    with atomic_write(path) as f:
        torch.save(obj, f)


def test_kill_9_during_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    save({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, str(path))
    result = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, ROOT, str(path)], capture_output=True)
    assert result.returncode == -9
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))


def test_disk_full_is_reported_and_previous_files_stay(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(["-a", "eca_resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data],
               main.RECIPE, main.BUILTIN, "") == 0
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pth.tar", "model_best.pth.tar")}

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    code = run(["-a", "eca_resnet18", "--epochs", "2", "--output-dir", str(out), "--resume",
                str(out / "checkpoint.pth.tar"), *TINY, data], main.RECIPE, main.BUILTIN, "")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3
    assert "No space left on device" in err and "unchanged" in err
    for name, blob in before.items():
        assert (out / name).read_bytes() == blob
    assert [f for f in os.listdir(out) if TEMP_TAG in f] == []
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1


def test_resume_onto_other_classes_is_refused(tmp_path, data, capsys):
    """Same number of classes, other names: the labels would silently mean other things."""
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--output-dir", str(out), *TINY]
    assert run(["--epochs", "1", *common, data], main.RECIPE, main.BUILTIN, "") == 0
    before = (out / "checkpoint.pth.tar").read_bytes()
    for split in ("train", "val"):
        os.rename(os.path.join(data, split, "class2"), os.path.join(data, split, "class9"))
    capsys.readouterr()
    code = run(["--epochs", "2", "--resume", str(out / "checkpoint.pth.tar"), *common, data], main.RECIPE,
               main.BUILTIN, "")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "other classes" in err and "class2 vs class9" in err and "--pretrained" in err
    assert (out / "checkpoint.pth.tar").read_bytes() == before


def test_mid_epoch_resume_with_another_batch_or_seed_is_refused(tmp_path, data, capsys):
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--output-dir", str(out), *TINY[2:], "--seed", "5"]  # TINY without its -b
    assert run(["--epochs", "1", "-b", "4", *common, data], main.RECIPE, main.BUILTIN, "") == 0
    path = out / "checkpoint.pth.tar"
    state = torch.load(path, weights_only=True)
    state.update(epoch=0, step=1)  # as a stop after the first step of epoch 0 leaves it
    save(state, str(path))
    os.remove(out / "metrics.csv")  # ...before any epoch's row (else the folder would have trained further)
    for flags, changed in ((["-b", "6"], "-b 4 -> 6"), (["-b", "4", "--seed", "6"], "--seed 5 -> 6")):
        capsys.readouterr()
        code = run(["--epochs", "1", "--resume", str(path), *common, *flags, data], main.RECIPE, main.BUILTIN, "")
        err = capsys.readouterr().err.strip()
        assert code == 2 and changed in err and "--start-epoch 0" in err and len(err.splitlines()) == 1, err
    assert run(["--epochs", "1", "-b", "4", "--resume", str(path), *common, data], main.RECIPE, main.BUILTIN, "") == 0
