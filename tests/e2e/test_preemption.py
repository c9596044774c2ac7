"""Signals stop training after the current step with a resumable checkpoint; resuming it gives the same weights
as an uninterrupted run, also with every training-recipe option on. The signalled run is a real process (the
signal is the point); its resumption and the uninterrupted reference run in this process."""
import os
import signal
import subprocess
import sys

import pytest
import torch

import main
from tests.e2e.test_recipe_options import ALL_OPTIONS, assert_same_state
from tests.helpers import ROOT, make_image_folder, run_script
from utils.running.runner import run

STEPS = 9  # 36 training images, batch 4
COMMON = ["--epochs", "1", "--crop-size", "32", "--val-resize", "36", "-b", "4", "-j", "1", "--no-progress",
          "--no-tensorboard"]
PLAIN = ["-a", "eca_resnet18", "--seed", "4", *COMMON]
EVERY_OPTION = ["-a", "resnet18", "--seed", "6", "--lr", "0.01", *COMMON, *ALL_OPTIONS[2:]]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def start_training(args):
    # The signalled run computes with this process's thread count, so that its steps round as the uninterrupted
    # reference's and the resumption's (both run here) do: exact resumption is compared bit for bit.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")
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


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), train_per_class=STEPS * 4 // 3, val_per_class=2)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """The checkpoint of each configuration trained without a stop (computed once per configuration)."""
    done = {}

    def checkpoint(flags):
        key = tuple(flags)
        if key not in done:
            out = tmp_path_factory.mktemp("straight")
            assert run([*flags, "--output-dir", str(out), data], main.RECIPE, main.BUILTIN, "") == 0
            done[key] = load(out / "checkpoint.pth.tar")
        return done[key]

    return checkpoint


@pytest.mark.parametrize("sig,flags", [(signal.SIGTERM, PLAIN), (signal.SIGINT, PLAIN), (signal.SIGUSR1, PLAIN),
                                       (signal.SIGTERM, EVERY_OPTION)],
                         ids=["SIGTERM", "SIGINT", "SIGUSR1", "SIGTERM-every-recipe-option"])
def test_signal_writes_resumable_checkpoint_and_resume_matches(tmp_path, data, uninterrupted, sig, flags, capsys):
    interrupted = tmp_path / "interrupted"
    proc = start_training([*flags, "--output-dir", str(interrupted), data])
    wait_for_training_start(proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "resume with:" in stdout and "--resume" in stdout
    assert f"=> {signal.Signals(sig).name} received" in stderr
    state = load(interrupted / "checkpoint.pth.tar")
    assert state["epoch"] == 0 and 0 < state["step"] < STEPS, "expected a mid-epoch checkpoint"
    assert "epoch_totals" in state and ("model_ema" in state) == ("--model-ema" in flags)
    status = run_script("scripts/run_status.py", [str(interrupted)])  # what a requeue script asks
    assert status.returncode == 10 and "stopped" in status.stdout and "resume with" in status.stdout, status.stdout

    resume = "auto" if flags is EVERY_OPTION else str(interrupted / "checkpoint.pth.tar")
    capsys.readouterr()
    assert run([*flags, "--output-dir", str(interrupted), "--resume", resume, data], main.RECIPE, main.BUILTIN,
               "") == 0
    assert f"step {state['step']}" in capsys.readouterr().out
    status = run_script("scripts/run_status.py", [str(interrupted)])
    assert status.returncode == 0 and "finished" in status.stdout, status.stdout
    a, b = load(interrupted / "checkpoint.pth.tar"), uninterrupted(flags)
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after interrupt + resume"
    if flags is EVERY_OPTION:
        assert_same_state(a, b)  # the moving average too


SECOND_SIGNAL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from utils.running.preemption import DUPLICATE_S, StopRequest
stop = StopRequest().install()
os.kill(os.getpid(), signal.SIGTERM)  # handled before kill returns: no waiting needed
print("requested" if stop.requested else "not requested", flush=True)
first, when = stop._first
stop._first = (first, when - DUPLICATE_S)  # as if the window in which a repeat is a duplicate had passed
os.kill(os.getpid(), signal.SIGTERM)
print("still running")
"""

DUPLICATE_SIGNAL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from utils.running.preemption import StopRequest
stop = StopRequest().install()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)  # SLURM and torchrun both delivering it
print("requested, still running" if stop.requested else "not requested", flush=True)
os.kill(os.getpid(), signal.SIGINT)  # another signal: exit at once
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
