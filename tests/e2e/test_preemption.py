"""Signals stop training after the current step with a resumable checkpoint; resuming it gives the
same weights as an uninterrupted run."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, make_image_folder, run_script


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def start_training(args):
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training_start(proc):
    """Read the run's output up to the line it prints once its stop handler is installed, right
    before the first step; a signal sent after it stops the run after a step of the epoch."""
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, "".join(lines) + proc.stderr.read()  # ended before training started
        lines.append(line)
        if line.startswith("=> training epochs"):
            return


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_writes_resumable_checkpoint_and_resume_matches(tmp_path, sig):
    data = make_image_folder(tmp_path / "data", train_per_class=60, val_per_class=2)
    common = ["-a", "eca_resnet18", "--seed", "4", "--epochs", "1", "--crop-size", "32", "--val-resize", "36",
              "-b", "4", "-j", "1", "--no-progress", "--no-tensorboard", data]
    interrupted = tmp_path / "interrupted"
    proc = start_training([*common, "--output-dir", str(interrupted)])
    wait_for_training_start(proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "resume with:" in stdout and "--resume" in stdout
    state = load(interrupted / "checkpoint.pth.tar")
    assert state["epoch"] == 0 and 0 < state["step"] < 45, "expected a mid-epoch checkpoint"
    status = run_script("scripts/run_status.py", [str(interrupted)])  # what a requeue script asks
    assert status.returncode == 10 and "stopped" in status.stdout and "resume with" in status.stdout, status.stdout

    resumed = run_script("main.py", [*common, "--output-dir", str(interrupted), "--resume",
                                     str(interrupted / "checkpoint.pth.tar")])
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {state['step']}" in resumed.stdout
    status = run_script("scripts/run_status.py", [str(interrupted)])
    assert status.returncode == 0 and "finished" in status.stdout, status.stdout
    straight = run_script("main.py", [*common, "--output-dir", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr
    a, b = load(interrupted / "checkpoint.pth.tar"), load(tmp_path / "straight" / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after interrupt + resume"


SECOND_SIGNAL_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from utils.preemption import DUPLICATE_S, StopRequest
stop = StopRequest().install()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("requested" if stop.requested else "not requested", flush=True)
time.sleep(DUPLICATE_S)  # past the window in which the same signal counts as a duplicate delivery
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("still running")
"""

DUPLICATE_SIGNAL_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from utils.preemption import StopRequest
stop = StopRequest().install()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)  # SLURM and torchrun both delivering it
time.sleep(0.2)
print("requested, still running" if stop.requested else "not requested", flush=True)
os.kill(os.getpid(), signal.SIGINT)  # another signal: exit at once
time.sleep(5)
print("still running")
"""


def test_a_duplicate_delivery_is_not_a_second_signal():
    result = subprocess.run([sys.executable, "-c", DUPLICATE_SIGNAL_SCRIPT, ROOT], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "requested, still running"
    assert result.returncode == 128 + signal.SIGINT and "second signal (SIGINT)" in result.stderr


def test_second_signal_exits_at_once():
    """The handler of the training loop: the first signal only asks for a stop, the second exits with
    128 + signal number without waiting (run in a child process: it ends the process)."""
    result = subprocess.run([sys.executable, "-c", SECOND_SIGNAL_SCRIPT, ROOT], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "requested"
    assert result.returncode == 128 + signal.SIGTERM
    assert "second signal" in result.stderr
