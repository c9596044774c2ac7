"""utils/running/preemption.py in this process: the first stop signal is a request, the same signal delivered
twice is one request, the handlers are restored, and a worker notices its launcher's death. Exiting at once on a
second signal ends the process, so tests/e2e/test_preemption.py checks it in a child."""
import os
import signal

import pytest
import torch

from utils.running import preemption
from utils.running.preemption import DUPLICATE_S, STOP_SIGNALS, StopRequest


@pytest.fixture()
def stop():
    request = StopRequest().install()
    yield request
    request.uninstall()


def test_the_handled_signals():
    assert set(STOP_SIGNALS) == {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP}


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_the_first_signal_asks_for_a_stop(stop, sig, capsys):
    assert not stop.requested
    os.kill(os.getpid(), sig)  # delivered to this thread before kill returns; the handler runs right after
    assert stop.requested and stop.signal_name == signal.Signals(sig).name
    err = capsys.readouterr().err
    assert f"=> {signal.Signals(sig).name} received: finishing this step, then saving a resumable checkpoint" in err


def test_the_same_signal_twice_at_once_is_one_request(stop, capsys, monkeypatch):
    """SLURM signals every process of a step and torchrun forwards the signal too: the duplicate must not exit."""
    exits = []
    monkeypatch.setattr(preemption.os, "_exit", exits.append)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and exits == []
    assert "second signal" not in capsys.readouterr().err


def test_a_second_signal_exits_at_once(stop, capsys, monkeypatch):
    exits = []
    monkeypatch.setattr(preemption.os, "_exit", exits.append)  # in a child it ends the process (e2e test)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # another signal
    assert exits == [128 + signal.SIGINT]
    assert "=> second signal (SIGINT): exiting now" in capsys.readouterr().err


def test_the_same_signal_after_the_duplicate_window_exits(stop, monkeypatch):
    exits = []
    monkeypatch.setattr(preemption.os, "_exit", exits.append)
    clock = [1000.0]
    monkeypatch.setattr(preemption.time, "monotonic", lambda: clock[0])
    os.kill(os.getpid(), signal.SIGTERM)
    clock[0] += DUPLICATE_S / 2
    os.kill(os.getpid(), signal.SIGTERM)
    assert exits == []
    clock[0] += DUPLICATE_S
    os.kill(os.getpid(), signal.SIGTERM)
    assert exits == [128 + signal.SIGTERM]


def test_uninstall_restores_the_previous_handlers():
    mine = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        request = StopRequest().install()
        assert all(signal.getsignal(sig) == request._handle for sig in STOP_SIGNALS)
        request.uninstall()
        assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before
        os.kill(os.getpid(), signal.SIGUSR1)  # ignored again, as before: nothing happens
        assert not request.requested
    finally:
        signal.signal(signal.SIGUSR1, mine)


def test_a_torchrun_worker_stops_when_its_launcher_is_gone(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    parent = [4242]
    monkeypatch.setattr(preemption.os, "getppid", lambda: parent[0])
    request = StopRequest()
    assert not request.requested
    parent[0] = 1  # re-parented: the launcher died (SIGKILL, or a signal it does not forward)
    assert request.requested and request.signal_name == "the launcher's exit"


def test_a_plain_process_outlives_its_parent_on_purpose(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    parent = [4242]
    monkeypatch.setattr(preemption.os, "getppid", lambda: parent[0])
    request = StopRequest()
    parent[0] = 1  # `nohup python main.py &` after its shell closed
    assert not request.requested


def test_one_process_checks_every_step(stop):
    should_stop = stop.checker(distributed=False, device=torch.device("cpu"), every=10)
    assert not should_stop(1)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert should_stop(3)  # not only every 10 steps: alone, nobody has to agree
