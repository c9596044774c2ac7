"""Building the model a run needs and placing it: weights, device, memory format and wrappers."""
import sys
from typing import Optional, Tuple

import torch
from torch import nn

from models import WeightsFile, create_model, load_strict

from ..config.sections import LaunchSettings, ModelSettings, NumericsSettings
from ..running.distributed import DistContext, say


def build_model(settings: ModelSettings, weights: Optional[WeightsFile], eca_impl: str = "conv") -> nn.Module:
    """The configured architecture in the chosen ECA form, with the checkpoint's weights loaded strictly when
    given."""
    model = create_model(settings.arch, k_size=settings.k_size, num_classes=settings.num_classes, eca_impl=eca_impl)
    if weights is not None:
        load_strict(model, weights.state_dict, weights.path)
    return model


def wrap_model(model: nn.Module, ctx: DistContext, numerics: NumericsSettings, launch: LaunchSettings,
               training: bool) -> Tuple[nn.Module, nn.Module]:
    """Move to the device and apply memory format, SyncBN, DDP/DataParallel and torch.compile. Returns the
    module to train with, and the one to evaluate with: never compiled (evaluation mode and the last,
    smaller batch would each make torch.compile build another graph in the middle of a run) and without
    DDP (evaluation exchanges no gradients). `model` itself stays the unwrapped handle for saving."""
    model.to(ctx.device)
    if numerics.channels_last:
        model.to(memory_format=torch.channels_last)
    runner: nn.Module = model
    evaluator: nn.Module = model
    if ctx.distributed and training:  # evaluation exchanges nothing: each rank runs its shard on the model
        if launch.sync_bn:
            runner = nn.SyncBatchNorm.convert_sync_batchnorm(runner)
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
    elif launch.data_parallel:
        say(f"=> {torch.cuda.device_count()} GPUs without a launcher: using DataParallel as the official code "
            f"does. DistributedDataParallel is faster: torchrun --nproc_per_node={torch.cuda.device_count()} "
            f"{sys.argv[0]} ...", file=sys.stderr)
        runner = evaluator = nn.DataParallel(runner)
    if numerics.compile:
        runner = torch.compile(runner, backend=numerics.compile_backend)
    return runner, evaluator
