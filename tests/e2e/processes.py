"""Starting and watching the processes of the end-to-end tests: torchrun launches and their workers, waited on
by condition (never by a fixed sleep)."""
import os
import signal
import socket
import subprocess
import sys
import time

from tests.helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(script, args, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}", os.path.join(ROOT, script), *args]


def torchrun(script, args, nproc=2, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(torchrun_command(script, args, nproc), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def children(pid: int) -> list:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def handles(pid: int, sig: int) -> bool:
    """Whether process `pid` has installed a handler for `sig` (its bit in SigCgt of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [int(line.split()[1], 16) for line in f if line.startswith("SigCgt:")]
    except FileNotFoundError:
        return False
    return bool(masks) and bool(masks[0] & (1 << (sig - 1)))


def wait_until_workers_handle(launcher, count=2, sig=signal.SIGTERM, timeout=60) -> list:
    """The launcher's worker pids, once each has installed its `sig` handler: a signal sent earlier would meet
    Python's default action and kill the worker. main.py installs it right before it builds its loaders."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = children(launcher.pid)
        if len(workers) == count and all(handles(pid, sig) for pid in workers):
            return workers
        assert launcher.poll() is None, "the launcher ended before its workers were ready"
        time.sleep(0.05)
    raise AssertionError(f"the workers did not install their stop handlers within {timeout} s")


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False
