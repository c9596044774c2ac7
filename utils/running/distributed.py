"""Process-group setup from the launcher (torchrun) or the official manual flags, and helpers.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the official flags
(--world-size, --rank, --dist-url, --dist-backend) still work for a manual launch. Only rank 0
prints and writes files.
"""
import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(local_rank: int, gpu: Optional[int], use_cuda: bool) -> torch.device:
    if gpu is not None:
        if not use_cuda:
            why = "--cpu was given" if torch.cuda.is_available() else "this machine has no CUDA GPU"
            raise UserError(f"--gpu {gpu}: {why}; drop --gpu to run on the CPU")
        if gpu >= torch.cuda.device_count():
            raise UserError(f"--gpu {gpu}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    if not use_cuda:
        return torch.device("cpu")
    index = gpu if gpu is not None else local_rank
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(launch, use_cuda: bool) -> DistContext:
    """Create the process group when launched by torchrun or with --world-size > 1 (the official manual
    launch). `launch`: the run's LaunchSettings (checked: a manual launch has --rank and a rendezvous)."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if env_world > 1:
        rank, world, local = int(os.environ["RANK"]), env_world, int(os.environ.get("LOCAL_RANK", "0"))
        init_method = "env://"
    elif launch.world_size > 1:
        rank, world = launch.rank, launch.world_size
        local = rank % max(1, torch.cuda.device_count()) if use_cuda else 0
        init_method = launch.dist_url
    else:
        return DistContext(device=_pick_device(0, launch.gpu, use_cuda))
    device = _pick_device(local, None, use_cuda)
    backend = launch.dist_backend or ("nccl" if use_cuda else "gloo")
    try:
        # A finite timeout turns a rank that died or hangs into an error on the others, not a hang.
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=launch.dist_timeout))
    except (RuntimeError, ValueError, OSError) as exc:  # DistStoreError, timeouts and refused connections
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        where = init_method if init_method != "env://" else (f"{os.environ.get('MASTER_ADDR')}:"
                                                            f"{os.environ.get('MASTER_PORT')}")
        raise UserError(f"rank {rank} of {world} could not join the process group at {where} ({reason}): check "
                        "that every rank was started with the same address and port, and that it is reachable "
                        "(--dist-timeout sets how long to wait)") from None
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def process_rank() -> int:
    """This process's global rank: the process group's, or before it exists the launcher's (torchrun's
    RANK); 0 for a single process."""
    if is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def say(*values, file=None, **kwargs) -> None:
    """print() on the first process only: the one way the project prints run output."""
    if process_rank() == 0:
        print(*values, file=file or sys.stdout, **kwargs)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_agree(flag: bool, device: torch.device) -> bool:
    """True only if `flag` is true on every process (one all-reduce when distributed)."""
    if not is_initialized():
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def any_process(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on some process."""
    return not all_agree(not flag, device)


def all_gather_objects(obj: Any) -> List[Any]:
    if not is_initialized():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
