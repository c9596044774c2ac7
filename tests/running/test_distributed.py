"""utils/running/distributed.py in this process: the single-process context, device choice and its errors, a
rendezvous that cannot be reached as one user error, rank-0-only printing, and the collectives' single-process
and one-member-group forms. Several processes: tests/e2e/test_distributed.py (torchrun)."""
import datetime
import os
import signal
import socket

import pytest
import torch
import torch.distributed as dist

from utils.config.sections import LaunchSettings
from utils.errors import UserError
from utils.running import distributed
from utils.running.distributed import (DistContext, all_agree, all_gather_objects, all_reduce_sum, any_process,
                                       broadcast_object, init_distributed, process_rank, say, world_size)
from utils.running.preemption import StopRequest


@pytest.fixture()
def no_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_one_process_gets_a_plain_context(no_launcher):
    ctx = init_distributed(LaunchSettings(), use_cuda=False)
    assert ctx == DistContext() and ctx.device == torch.device("cpu")
    assert not ctx.distributed and ctx.is_main and not dist.is_initialized()
    assert DistContext(rank=1, world_size=2).distributed and not DistContext(rank=1, world_size=2).is_main


def test_gpu_without_cuda_says_why(no_launcher):
    with pytest.raises(UserError, match="^--gpu 0: (this machine has no CUDA GPU|--cpu was given); drop --gpu"):
        init_distributed(LaunchSettings(gpu=0), use_cuda=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without enough GPUs")
def test_gpu_index_beyond_the_machine(no_launcher, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match=r"^--gpu 5: this machine has 2 GPU\(s\), numbered from 0$"):
        distributed._pick_device(0, 5, use_cuda=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_rendezvous_is_one_user_error(no_launcher):
    """Rank 1 of 2 waiting for a rank 0 that never comes: after --dist-timeout, one line naming the address."""
    url = f"tcp://127.0.0.1:{free_port()}"
    launch = LaunchSettings(world_size=2, rank=1, dist_url=url, dist_backend="gloo", dist_timeout=0.02)  # 1.2 s
    with pytest.raises(UserError) as info:
        init_distributed(launch, use_cuda=False)
    message = str(info.value)
    assert message.startswith(f"rank 1 of 2 could not join the process group at {url} (")
    assert "--dist-timeout" in message and "\n" not in message
    assert not dist.is_initialized()


@pytest.mark.parametrize("rank,printed", [("0", True), ("1", False)])
def test_only_the_first_process_prints(monkeypatch, capsys, rank, printed):
    monkeypatch.setenv("RANK", rank)
    assert process_rank() == int(rank)
    say("hello", "world", sep="-")
    say("to stderr", file=__import__("sys").stderr)
    captured = capsys.readouterr()
    assert (captured.out == "hello-world\n") == printed and ("to stderr" in captured.err) == printed


def test_collectives_without_a_process_group(no_launcher):
    cpu = torch.device("cpu")
    assert world_size() == 1 and process_rank() == 0
    assert all_agree(True, cpu) and not all_agree(False, cpu)
    assert any_process(True, cpu) and not any_process(False, cpu)
    assert all_gather_objects({"a": 1}) == [{"a": 1}] and broadcast_object([3]) == [3]
    assert torch.equal(all_reduce_sum(torch.tensor([2.0])), torch.tensor([2.0]))
    distributed.cleanup()  # nothing to clean


@pytest.fixture()
def one_member_group(tmp_path, no_launcher):
    """A real gloo process group of this process alone: the collectives' distributed code paths."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    yield
    distributed.cleanup()
    assert not dist.is_initialized()


def test_collectives_in_a_process_group(one_member_group):
    cpu = torch.device("cpu")
    assert distributed.is_initialized() and world_size() == 1 and process_rank() == 0
    assert all_agree(True, cpu) and not all_agree(False, cpu) and any_process(True, cpu)
    assert all_gather_objects(("x", 1)) == [("x", 1)] and broadcast_object({"seed": 5}) == {"seed": 5}
    assert torch.equal(all_reduce_sum(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))


def test_ranks_agree_on_a_stop_every_print_freq_steps(one_member_group):
    stop = StopRequest().install()
    try:
        should_stop = stop.checker(distributed=True, device=torch.device("cpu"), every=4)
        os.kill(os.getpid(), signal.SIGTERM)
        assert [should_stop(step) for step in (1, 2, 3, 4, 5, 8)] == [False, False, False, True, False, True]
    finally:
        stop.uninstall()
