"""Every write facing a bad location or a failing disk: checked before any work (exit 2), or one line naming
the path when it fails mid-run (exit 3), and every file that existed before intact.

Real faults where this machine allows (a small tmpfs that fills, a read-only mount; CI runs as root), the
same errors injected where a mount is refused."""
import contextlib
import csv
import json
import os
import subprocess

import pytest
import torch

import main
from models import create_model
from tests.helpers import TINY, make_image_folder, run_script
from utils.running.files import TEMP_TAG
from utils.running.runner import run


@pytest.fixture()
def data(tmp_path):
    return make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)


def run_main(argv, capsys):
    code = run(argv, main.RECIPE, main.BUILTIN, "")
    captured = capsys.readouterr()
    return code, captured.err.strip()


def one_line_naming(err: str, *needles) -> bool:
    last = err.splitlines()[-1] if err else ""
    return "Traceback" not in err and all(n in last for n in needles)


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in os.listdir(folder) if not name.startswith(".")}


@contextlib.contextmanager
def mounted(path, options):
    """A tmpfs mounted at `path` (root only); skips the test's real-fault part where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the injected cases cover it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_output_dir_is_refused_before_work(tmp_path, data, capsys):
    with mounted(tmp_path / "ro", "size=1m,ro") as ro:
        code, err = run_main(["-a", "resnet18", "--epochs", "1", "--output-dir", str(ro / "run"), *TINY, data], capsys)
    assert code == 2 and one_line_naming(err, str(ro / "run"), "Read-only file system")


@pytest.mark.parametrize("flag", ["--output-dir", "--predictions"])
def test_output_below_a_regular_file_is_refused_before_work(tmp_path, data, capsys, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("resnet18", num_classes=3).state_dict()}, weights)
    argv = ["-e", "--resume", str(weights), *TINY, flag, str(blocker / "out"), data]
    code, err = run_main(argv, capsys)
    assert code == 2 and one_line_naming(err, "not a folder", str(blocker))
    assert blocker.read_text() == "x"


def test_predictions_into_a_new_folder_is_created(tmp_path, data, capsys):
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("resnet18", num_classes=3).state_dict()}, weights)
    target = tmp_path / "new" / "deeper" / "pred.csv"
    code, err = run_main(["-e", "--resume", str(weights), *TINY, "--output-dir", str(tmp_path / "e"),
                          "--predictions", str(target), data], capsys)
    assert code == 0, err
    assert len(list(csv.DictReader(open(target)))) == 6


def test_a_full_disk_mid_run_keeps_every_earlier_file(tmp_path, data, capsys):
    """A real tmpfs that others fill up while the run is away: the next checkpoint cannot be written, which
    torch.save reports as a RuntimeError."""
    with mounted(tmp_path / "small", "size=300m") as disk:
        out = disk / "run"
        common = ["-a", "resnet18", "--output-dir", str(out), *TINY, data]
        # ~90 MB a checkpoint (weights and momentum): the last one, the best, and a new one being written.
        assert run(["--epochs", "1", *common], main.RECIPE, main.BUILTIN, "") == 0
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "another_jobs_file", "wb") as f:  # leaves 4 MB
            f.write(b"\0" * (free - (4 << 20)))
        before = snapshot(out)
        capsys.readouterr()
        code, err = run_main(["--epochs", "2", "--resume", str(out / "checkpoint.pth.tar"), *common], capsys)
        assert code == 3 and one_line_naming(err, str(out), "unchanged"), err
        after = snapshot(out)
        json.loads(after.pop("args.json"))  # the resumed run's own configuration, written before the failure
        before.pop("args.json")
        assert json.loads(after.pop("status.json"))["state"] == "failed"  # the run's record of what happened
        status = run_script("scripts/run_status.py", [str(out)])  # requeueing would fail again: exit 1
        assert status.returncode == 1 and "failed" in status.stdout, status.stdout
        before.pop("status.json")
        assert after == before
        assert not [name for name in os.listdir(out) if TEMP_TAG in name]
        assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("target", ["args.json", "metrics.csv", "tensorboard", "eval_results.json", "predictions"])
def test_every_writer_reports_a_failure_in_one_line(tmp_path, data, capsys, monkeypatch, target):
    """A write that fails with whatever exception its writer raises: exit 3, one line naming the file."""
    import utils.running.files
    import utils.running.run_logger

    out = tmp_path / "run"
    weights = tmp_path / "w.pth.tar"
    torch.save({"state_dict": create_model("resnet18", num_classes=3).state_dict()}, weights)
    real = utils.running.files.atomic_write

    @contextlib.contextmanager
    def failing(path, *args, **kwargs):
        if os.path.basename(str(path)) in (target, "pred.csv"):
            raise utils.running.files.OutputWriteError(f"cannot write {path} (No space left on device)")
        with real(path, *args, **kwargs) as f:
            yield f

    if target == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        def full(*args, **kwargs):
            raise RuntimeError("EventFileWriter: No space left on device")

        monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    else:
        monkeypatch.setattr(utils.running.files, "atomic_write", failing)
        monkeypatch.setattr(utils.running.run_logger, "write_json", lambda p, payload: failing(p).__enter__())

        def failing_append(path, text):  # metrics.csv is appended, row by row
            if os.path.basename(str(path)) == target:
                raise utils.running.files.OutputWriteError(f"cannot write {path} (No space left on device)")
            real_append(path, text)

        real_append = utils.running.run_logger.append_text
        monkeypatch.setattr(utils.running.run_logger, "append_text", failing_append)
        import utils.running.runner

        monkeypatch.setattr(utils.running.runner, "atomic_write", failing)
    if target in ("eval_results.json", "predictions"):
        argv = ["-e", "--resume", str(weights), *TINY, "--output-dir", str(out), "--predictions",
                str(tmp_path / "pred.csv"), data]
    else:
        argv = ["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY[:-1], data]
    code, err = run_main(argv, capsys)
    assert code == 3, err
    assert one_line_naming(err, "cannot write"), err
    if target in ("metrics.csv", "tensorboard"):  # written after the epoch: its checkpoint is kept
        assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1
    if target == "args.json":  # written before training starts: nothing trained, nothing lost
        assert not (out / "checkpoint.pth.tar").exists()


def test_temporaries_of_a_killed_write_are_removed_at_the_next_start(tmp_path, data):
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--output-dir", str(out), *TINY, data]
    assert run(["--epochs", "1", *common], main.RECIPE, main.BUILTIN, "") == 0
    leftover = out / f".checkpoint.pth.tar{TEMP_TAG}k1ll3d"  # what kill -9 in the middle of torch.save leaves
    leftover.write_bytes(b"\0" * 1000)
    assert run(["--epochs", "2", "--resume", "auto", *common], main.RECIPE, main.BUILTIN, "") == 0
    assert not leftover.exists()


def test_an_unreadable_val_image_does_not_cost_the_trained_epoch(tmp_path, data, capsys):
    with open(os.path.join(data, "val", "class1", "img0.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a JPEG")
    out = tmp_path / "run"
    code = run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data], main.RECIPE, main.BUILTIN,
               "")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "5 images, 1 unreadable images left out" in captured.out and "class1/img0.jpg" in captured.err
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1


def test_outputs_stay_valid_files_for_any_file_name_and_any_loss(tmp_path, capsys):
    """File names with commas, quotes and bytes that are not UTF-8 go through the csv module; a non-finite
    loss is null in strict JSON."""
    data = make_image_folder(tmp_path / "data", n_classes=2, val_per_class=1, splits=("val",))
    folder = os.path.join(data, "val", "class0")
    odd = [b'a,b "c".jpg', b"caf\xe9.jpg"]  # the second is Latin-1, not UTF-8
    for name in odd:
        os.rename(os.path.join(folder, "img0.jpg"), os.path.join(folder.encode(), name))
        make_image_folder(tmp_path / "data", n_classes=2, val_per_class=1, splits=("val",))
    weights = tmp_path / "w.pth.tar"
    model = create_model("resnet18", num_classes=2)
    with torch.no_grad():  # finite weights (others are refused) whose products overflow: the loss is not a number
        model.fc.weight.fill_(3e38)
    torch.save({"state_dict": model.state_dict()}, weights)
    preds = tmp_path / "pred.csv"
    code, err = run_main(["-e", "--resume", str(weights), *TINY, "--output-dir", str(tmp_path / "e"),
                          "--predictions", str(preds), data], capsys)
    assert code == 0, err
    rows = list(csv.reader(open(preds, newline="", encoding="utf-8", errors="surrogateescape")))
    names = {row[0] for row in rows[1:]}
    assert 'class0/a,b "c".jpg' in names and len(rows) == 1 + 4
    results = json.loads((tmp_path / "e" / "eval_results.json").read_text())
    assert results["loss"] is None and results["count"] == 4
