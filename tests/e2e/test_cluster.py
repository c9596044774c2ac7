"""Running on a shared cluster: logs written to files, run folders that never collide, files readable as
the umask says, --resume auto for requeued jobs, and preemption signals that reach the training processes
under torchrun."""
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

import main
from tests.e2e.processes import alive, free_port, wait_until_workers_handle
from tests.helpers import ROOT, TINY, make_image_folder
from utils.running.runner import run


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture()
def data(tmp_path):
    return make_image_folder(tmp_path / "data", train_per_class=8, val_per_class=2)


def test_output_to_a_file_is_plain_lines(tmp_path, data, capsys):
    """Not a terminal: no carriage returns, one line every -p steps, and the official result line on its own."""
    assert run(["-a", "resnet18", "--epochs", "2", "-b", "4", "-p", "2", "--crop-size", "32", "--val-resize", "36",
                "-j", "0", "--no-tensorboard", "--output-dir", str(tmp_path / "run"), data], main.RECIPE, main.BUILTIN,
               "") == 0
    result = capsys.readouterr()  # what a log file gets: neither stream is a terminal
    assert "\r" not in result.out + result.err
    for epoch in (0, 1):  # 24 images, batch 4: 6 steps, a line after steps 2, 4 and 6
        lines = re.findall(rf"^Epoch: \[{epoch}\]\[(\d+)/6\]\tTime [\d.]+ \([\d.]+\)\tData [\d.]+ \([\d.]+\)\t"
                           r"Loss [\d.]+ \([\d.]+\)\tPrec@1 [\d.]+ \([\d.]+\)\tlr [\d.e-]+\timg/s \d+$",
                           result.out, re.M)
        assert lines == ["2", "4", "6"], result.out
    assert len(re.findall(r"^ \* Prec@1 [\d.]+ Prec@5 [\d.]+$", result.out, re.M)) == 2
    assert len(re.findall(r"^Val: \[\d\] 6 images", result.out, re.M)) == 2


def test_a_second_run_never_overwrites_the_first(tmp_path, data, capsys):
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--output-dir", str(out), *TINY]
    assert run([*common, "--epochs", "1", "--seed", "1", data], main.RECIPE, main.BUILTIN, "") == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out) if not name.startswith(".")}
    capsys.readouterr()
    assert run([*common, "--epochs", "2", "--seed", "2", data], main.RECIPE, main.BUILTIN, "") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume auto" in err and "--output-dir" in err and str(out) in err
    assert {name: (out / name).read_bytes() for name in before} == before


def test_two_runs_started_at_once_on_one_folder(tmp_path, data, capsys):
    """One takes the folder, the other stops before writing: the checkpoint and args.json belong to one run. The
    first is a real process holding the folder; the second starts here while it trains."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), "-a", "resnet18", "--epochs", "1",
                              "--seed", "11", "--output-dir", str(out), *TINY, data], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().startswith(f"pid {first.pid} ")) and first.poll() is None:
        assert time.time() < deadline, "the first run did not take its folder"
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    code = run(["-a", "resnet18", "--epochs", "1", "--seed", "22", "--output-dir", str(out), *TINY, data],
               main.RECIPE, main.BUILTIN, "")
    loser = capsys.readouterr().err
    stdout, stderr = first.communicate(timeout=300)
    assert (first.returncode, code) == (0, 2), stderr
    assert f"in use by another run (pid {first.pid} on " in loser or "already holds a run" in loser, loser
    import json

    assert json.load(open(out / "args.json"))["seed"] == load(out / "checkpoint.pth.tar")["args"]["seed"] == 11


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_are_readable_as_the_umask_says(tmp_path, data, umask):
    out = tmp_path / "run"
    old = os.umask(umask)
    try:
        assert run(["-a", "resnet18", "--epochs", "1", "--output-dir", str(out), *TINY[:-1], data],
                   main.RECIPE, main.BUILTIN, "") == 0
    finally:
        os.umask(old)
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "args.json", "metrics.csv"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o666 & ~umask, name


def test_resume_auto_starts_fresh_then_continues(tmp_path, data, capsys):
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--resume", "auto", "--seed", "3", "--output-dir", str(out), *TINY, data]
    assert run(["--epochs", "1", *common], main.RECIPE, main.BUILTIN, "") == 0
    assert "resumed" not in capsys.readouterr().out
    assert run(["--epochs", "2", *common], main.RECIPE, main.BUILTIN, "") == 0
    assert f"resumed {out / 'checkpoint.pth.tar'}: epoch 1" in capsys.readouterr().out
    assert load(out / "checkpoint.pth.tar")["epoch"] == 2
    assert run(["--epochs", "2", *common], main.RECIPE, main.BUILTIN, "") == 0  # a requeued finished job
    assert "nothing to train" in capsys.readouterr().out


def test_resume_auto_restarts_a_run_killed_before_its_first_checkpoint(tmp_path, data, capsys):
    """A hard kill (node failure, SIGKILL after the grace period) in the first epoch leaves args.json and
    status.json but no checkpoint: the requeued job, with the same command, starts the run again."""
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--resume", "auto", "--seed", "3", "--epochs", "1", "--output-dir", str(out), *TINY,
              data]
    out.mkdir()
    (out / "args.json").write_text("{}")
    (out / "status.json").write_text('{"state": "failed", "message": "killed"}')
    assert run(common, main.RECIPE, main.BUILTIN, "") == 0
    assert f"no checkpoint in {out} yet; starting a new run" in capsys.readouterr().out
    assert load(out / "checkpoint.pth.tar")["epoch"] == 1


def test_resume_auto_does_not_start_over_a_run_whose_checkpoint_is_gone(tmp_path, data, capsys):
    """model_best.pth.tar (or metrics.csv) without checkpoint.pth.tar: epochs were trained there, and a fresh
    start would overwrite them. One line naming the file to resume from."""
    out = tmp_path / "run"
    common = ["-a", "resnet18", "--resume", "auto", "--seed", "3", "--output-dir", str(out), *TINY, data]
    assert run(["--epochs", "1", *common], main.RECIPE, main.BUILTIN, "") == 0
    (out / "checkpoint.pth.tar").unlink()
    best = (out / "model_best.pth.tar").read_bytes()
    capsys.readouterr()
    assert run(["--epochs", "2", *common], main.RECIPE, main.BUILTIN, "") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--resume {out / 'model_best.pth.tar'}" in err, err
    assert (out / "model_best.pth.tar").read_bytes() == best
    assert run(["--epochs", "2", *common[2:], "--resume", str(out / "model_best.pth.tar")], main.RECIPE,
               main.BUILTIN, "") == 0
    assert load(out / "checkpoint.pth.tar")["epoch"] == 2


def start_torchrun_training(tmp_path, args, env=None):
    """torchrun with 2 CPU workers training resnet18 on a small folder, returned once training has started and
    both workers handle SIGTERM: (launcher, worker pids, the launcher's output lines so far)."""
    data = make_image_folder(tmp_path / "data", train_per_class=40, val_per_class=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           os.path.join(ROOT, "main.py"), "-a", "resnet18", "--epochs", "3", "-b", "4", "--crop-size", "32",
           "--val-resize", "36", "-j", "0", "--no-tensorboard", *args, data]
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    lines = []
    while not any(line.startswith("=> training epochs") for line in lines):
        line = launcher.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    return launcher, wait_until_workers_handle(launcher), lines


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGUSR1", "SIGKILL"])
def test_a_signal_to_torchrun_stops_the_workers_with_a_checkpoint(tmp_path, how):
    """torchrun forwards SIGTERM and SIGINT to its workers; SIGUSR1 (which it does not handle) and SIGKILL end
    torchrun alone, and the workers, left without their launcher, stop by themselves. Every case: the workers
    save a resumable checkpoint after the signal and exit within a bounded time."""
    out = tmp_path / "run"
    launcher, workers, _ = start_torchrun_training(tmp_path, ["-p", "1", "--output-dir", str(out)])
    sent = time.time()
    launcher.send_signal(getattr(signal, how))
    try:
        rest, _ = launcher.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        launcher.kill()
        raise AssertionError("torchrun did not end")
    deadline = time.time() + 90
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(alive(pid) for pid in workers), f"workers left running after {how}"
    state = load(out / "checkpoint.pth.tar")  # checkpoints hold no time: the file's is when it was written
    assert os.stat(out / "checkpoint.pth.tar").st_mtime >= sent and (state["step"] > 0 or state["epoch"] > 0), \
        state["epoch"]
    assert "epoch_totals" in state or "epoch_row" in state
    if how in ("SIGTERM", "SIGINT"):  # the workers' own output comes through the launcher
        assert "resume with:" in rest, rest[-3000:]


# Loaded by every worker through PYTHONPATH: rank 0's checkpoint write takes 3 s longer, and each rank
# records when its checkpoint write ended and when the process exits.
SLOW_SAVE = '''
import atexit, os, time
import torch
_rank, _log, _save = os.environ.get("RANK"), os.environ["SAVE_LOG"], torch.save
def _slow_save(obj, f, *args, **kwargs):
    if _rank == "0" and isinstance(obj, dict) and "step" in obj:
        time.sleep(3)
    _save(obj, f, *args, **kwargs)
    with open(_log, "a") as log:
        log.write(f"saved {_rank} {time.time()}\\n")
torch.save = _slow_save
if _rank is not None:  # a worker, not the launcher
    atexit.register(lambda: open(_log, "a").write(f"exit {_rank} {time.time()}\\n"))
'''


def test_no_worker_exits_before_the_stop_checkpoint_is_written(tmp_path):
    """A launcher that ends the whole job when its first process exits (srun --kill-on-bad-exit seeing a
    torchrun exit 1 after SIGTERM) must not cut rank 0's checkpoint write short: every rank waits for it."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SAVE)
    log = tmp_path / "save.log"
    launcher, _, lines = start_torchrun_training(tmp_path, ["--no-progress", "--output-dir", str(tmp_path / "run")],
                                                 {"PYTHONPATH": str(hooks), "SAVE_LOG": str(log)})
    launcher.send_signal(signal.SIGTERM)
    rest, _ = launcher.communicate(timeout=120)
    events = [line.split() for line in log.read_text().splitlines()]
    saved = [float(t) for kind, rank, t in events if kind == "saved" and rank == "0"]
    exits = {rank: float(t) for kind, rank, t in events if kind == "exit"}
    assert saved and set(exits) == {"0", "1"}, "".join(lines) + rest
    assert exits["1"] >= saved[-1], f"rank 1 exited {saved[-1] - exits['1']:.1f} s before rank 0's checkpoint"
