"""--skip-nonfinite under DDP: when one process's loss is not finite, every process skips the step together
(one skipping backward while the others all-reduce gradients would hang the job)."""
import datetime
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.e2e.processes import free_port


def _worker(rank: int, port: int, results):
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
    from tests.helpers import cpu_numerics, lr_schedule
    from utils.training.engine import _update
    from utils.training.numerics import Numerics
    from utils.training.schedule import build_scheduler
    from utils.training.state import TrainState

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    numerics = Numerics(cpu_numerics())
    state = TrainState(model, ddp, model, optimizer, build_scheduler(optimizer, lr_schedule("step", 0.1), 1),
                       numerics.grad_scaler(), numerics, torch.nn.CrossEntropyLoss())
    before = model.weight.detach().clone()
    inputs = torch.randn(3, 4)
    if rank == 1:
        inputs[0, 0] = float("nan")  # only this process sees a non-finite loss
    loss = state.criterion(ddp(inputs), torch.tensor([0, 1, 0]))
    skipped = not _update(state, loss, skip_nonfinite=True)
    good = state.criterion(ddp(torch.randn(3, 4)), torch.tensor([1, 0, 1]))  # the next step: both must get here
    updated = _update(state, good, skip_nonfinite=True)
    results[rank] = (skipped, updated, torch.equal(before, model.weight.detach()))
    dist.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank():
    manager = mp.Manager()
    results = manager.dict()
    # Spawned: a child forked from this process (which has run autograd and OpenMP threads) cannot backward.
    ranks = mp.start_processes(_worker, args=(free_port(), results), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):  # a hang fails this test instead of the whole suite
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            raise AssertionError("the two ranks did not finish within 120 s (a hang: one skipped, one all-reduced?)")
    # Both skipped the first step, both took the second (weights moved), and nobody hung.
    assert dict(results) == {0: (True, True, False), 1: (True, True, False)}
