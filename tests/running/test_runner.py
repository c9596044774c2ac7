"""utils/running/runner.py: the driver's own logic in this process: the resume command (shell-quoted, the old
--resume replaced), status.json from "running" at the start to how the run ended, the predictions file, and the
lines that describe a run."""
import csv
import json
import os
import shlex
import socket
import sys

import pytest

import main
from tests.helpers import TINY, make_image_folder
from utils.running import runner
from utils.running.runner import resume_command, run, write_predictions


@pytest.mark.parametrize("argv,expected", [
    (["main.py", "-a", "eca_resnet18", "/data"], ["main.py", "--resume", "CK", "-a", "eca_resnet18", "/data"]),
    (["main.py", "--resume", "old.pth.tar", "--epochs", "3", "/d"], ["main.py", "--resume", "CK", "--epochs", "3", "/d"]),
    (["main.py", "--resume=old.pth.tar", "/d"], ["main.py", "--resume", "CK", "/d"]),
    (["main.py", "--resume", "auto", "--output-dir", "runs/x", "/d"],
     ["main.py", "--resume", "CK", "--output-dir", "runs/x", "/d"]),
])
def test_the_resume_command_replaces_an_earlier_resume(argv, expected, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    command = resume_command("CK")
    assert shlex.split(command) == ["python", *expected]


def test_the_resume_command_can_be_pasted_as_it_is(monkeypatch):
    """Paths with spaces, quotes and shell characters come back as the same words."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    odd = ["/data/my images", "--action", "it's", "--output-dir", "runs/$HOME;rm -rf x"]
    monkeypatch.setattr(sys, "argv", ["/repo/main.py", *odd])
    command = resume_command("/runs/a b/checkpoint.pth.tar")
    assert shlex.split(command) == ["python", "/repo/main.py", "--resume", "/runs/a b/checkpoint.pth.tar", *odd]
    assert "'/runs/a b/checkpoint.pth.tar'" in command and "'runs/$HOME;rm -rf x'" in command


def test_under_torchrun_the_resume_command_is_a_torchrun_command(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["main.py", "/d"])
    assert resume_command("c.pth.tar") == "torchrun --nproc_per_node=N main.py --resume c.pth.tar /d"


def test_predictions_are_one_csv_row_per_image(tmp_path):
    path = tmp_path / "p.csv"
    write_predictions(str(path), [(0, 2, [2, 0, 1]), (1, 0, [1, 2, 0])], ["a/x.jpg", 'b/odd, "name".jpg'])
    rows = list(csv.reader(open(path, newline="")))
    assert rows == [["path", "target", "top1", "top2", "top3"], ["a/x.jpg", "2", "2", "0", "1"],
                    ['b/odd, "name".jpg', "0", "1", "2", "0"]]
    write_predictions(str(path), [(7, 1, [1, 0])], None)  # synthetic data: the index stands for the path
    assert list(csv.reader(open(path)))[1] == ["7", "1", "1", "0"]
    write_predictions(str(path), [], [])
    assert open(path).read() == "path,target,top1,top2,top3,top4,top5\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), train_per_class=4, val_per_class=2)


def test_status_json_says_running_from_the_start_then_finished(tmp_path, data, monkeypatch, capsys):
    """A run that is killed at any moment after the start leaves "running" with its pid and host, which tells a
    live run from a dead one; at the end, how it ended."""
    out = tmp_path / "run"
    seen = {}
    real_fit = runner.Trainer.fit

    def fit(self, *args, **kwargs):
        seen.update(json.loads((out / "status.json").read_text()))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(runner.Trainer, "fit", fit)
    monkeypatch.setattr(sys, "argv", ["main.py"])
    assert run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data], main.RECIPE,
               main.BUILTIN, "") == 0
    assert seen["state"] == "running" and seen["pid"] == os.getpid() and seen["host"] == socket.gethostname()
    assert seen["message"].startswith("training since ") and f"(pid {os.getpid()} on " in seen["message"]
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "finished" and status["message"].startswith("done: best Prec@1 ")
    assert set(status) == {"state", "message", "time", "pid", "host"}
    assert status["time"][:2] == "20" and status["time"][-5] in "+-"  # local time with its UTC offset
    lines = capsys.readouterr().out.splitlines()
    model = next(line for line in lines if line.startswith("=> resnet18 "))
    assert model == ("=> resnet18 k_size=- classes=3 device=cpu processes=1 amp=none channels_last=False "
                     "compile=False eca_impl=conv data_backend=pil")
    config = next(line for line in lines if line.startswith("=> config: "))
    assert " epochs=1 " in config and " lr=0.1 " in config and " arch=resnet18 " in config


def test_a_failure_after_the_start_is_recorded_and_reraised(tmp_path, data, monkeypatch, capsys):
    from utils.errors import RunError

    def broken(self, *args, **kwargs):
        raise RunError("cannot write x (No space left on device)")

    monkeypatch.setattr(runner.Trainer, "fit", broken)
    monkeypatch.setattr(sys, "argv", ["main.py"])
    out = tmp_path / "run"
    assert run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data], main.RECIPE,
               main.BUILTIN, "") == 3
    status = json.loads((out / "status.json").read_text())
    assert status == {**status, "state": "failed", "message": "cannot write x (No space left on device)"}
    assert capsys.readouterr().err.strip().splitlines()[-1] == "main.py: error: cannot write x (No space left on device)"
    from utils.running.run_folder import RunFolder

    folder = RunFolder(str(out))  # the failed run released its folder
    folder.claim()
    folder.release()


def test_a_user_error_found_after_loading_is_recorded_as_failed(tmp_path, data, monkeypatch):
    from utils.errors import UserError

    def refuse(*args, **kwargs):
        raise UserError("found once the data is loaded")

    monkeypatch.setattr(runner, "build_train_state", refuse)
    out = tmp_path / "run"
    assert run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY, data], main.RECIPE,
               main.BUILTIN, "") == 2
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_a_rejected_command_writes_no_status(tmp_path, data):
    out = tmp_path / "run"
    assert run(["--lr", "-1", "--output-dir", str(out), data], main.RECIPE, main.BUILTIN, "") == 2
    assert not out.exists()


def test_the_kernel_sizes_in_the_model_line():
    from types import SimpleNamespace

    from models import create_model
    from tests.helpers import cpu_numerics

    config = SimpleNamespace(model=SimpleNamespace(arch="eca_resnet18", num_classes=3), numerics=cpu_numerics(),
                             launch=SimpleNamespace(processes=2), data=SimpleNamespace(dummy=True, data_backend="pil"))
    line = runner._model_line(config, create_model("eca_resnet18", num_classes=3))
    assert line.startswith("=> eca_resnet18 k_size=3577 classes=3 device=cpu processes=2 ")
    assert line.endswith(" data_backend=synthetic")
    assert " k_size=3,11,11,13 " in runner._model_line(config, create_model("eca_resnet18", k_size="3,11,11,13"))
