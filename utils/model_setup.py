"""Building the model a run needs: architecture, kernel sizes and class count from the user or, when
not given, from the checkpoint's tensors; then weights, device, memory format and wrappers."""
import sys
from typing import Dict, Optional

import torch
from torch import nn

from models import CheckpointError, create_model, format_ksize, model_family
from models.attention import set_eca_implementation
from models.pretrained import check_compatible

from .checkpoint import classifier_outputs, eca_kernel_sizes, infer_arch, resnet_stage_kernels


def kernels_from_state(arch: str, state_dict: Dict[str, torch.Tensor]):
    """The k_size argument that rebuilds the checkpoint's ECA layers (None for the defaults)."""
    if model_family(arch) == "resnet":
        return resnet_stage_kernels(state_dict)
    kernels = eca_kernel_sizes(state_dict)
    if kernels and len(set(kernels)) == 1 and kernels[0] != 1:
        return kernels[0]
    return None


def resolve_from_checkpoint(args, explicit: set, state_dict: Dict[str, torch.Tensor], path: str,
                            say=print) -> None:
    """Fill arch, k_size and num_classes from a checkpoint's tensors where the user gave none;
    a given --ksize that disagrees with the file is an error naming both."""
    if "arch" not in explicit:
        detected = infer_arch(state_dict)
        if detected and detected != args.arch:
            say(f"=> {path}: tensors match {detected}; using it (pass -a to override)")
            args.arch = detected
    file_kernels = kernels_from_state(args.arch, state_dict)
    if args.k_size is not None and file_kernels is not None and args.k_size != "adaptive":
        wanted = args.k_size if isinstance(args.k_size, list) else None
        if wanted is not None and wanted != file_kernels:
            raise CheckpointError(
                f"--ksize {format_ksize(wanted)} disagrees with {path}, whose ECA kernels are "
                f"{format_ksize(file_kernels)}: drop --ksize (it is read from the file) or use the matching file")
    if args.k_size is None and file_kernels is not None:
        args.k_size = file_kernels
    file_classes = classifier_outputs(state_dict)
    if args.num_classes is None and file_classes is not None:
        args.num_classes = file_classes


def build_model(args, state_dict: Optional[Dict[str, torch.Tensor]], source: str) -> nn.Module:
    """Create args.arch; load `state_dict` strictly when given (errors name the mismatched tensors)."""
    model = create_model(args.arch, k_size=args.k_size, num_classes=args.num_classes)
    if state_dict is not None:
        check_compatible(model, state_dict, source)
        model.load_state_dict(state_dict, strict=True)
    return model


def wrap_model(model: nn.Module, ctx, numerics, args, is_training: bool) -> nn.Module:
    """Move to the device and apply memory format, SyncBN, DDP/DataParallel and torch.compile.
    Returns the module to call; `model` itself stays the unwrapped handle for saving."""
    model.to(ctx.device)
    set_eca_implementation(model, args.eca_impl)
    if numerics.channels_last:
        model.to(memory_format=torch.channels_last)
    runner: nn.Module = model
    if ctx.distributed:
        if args.sync_bn and is_training:
            runner = nn.SyncBatchNorm.convert_sync_batchnorm(runner)
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
    elif ctx.device.type == "cuda" and args.gpu is None and torch.cuda.device_count() > 1:
        if ctx.is_main:
            print(f"=> {torch.cuda.device_count()} GPUs without a launcher: using DataParallel as the official "
                  "code does. DistributedDataParallel is faster: torchrun --nproc_per_node="
                  f"{torch.cuda.device_count()} {sys.argv[0]} ...", file=sys.stderr)
        runner = nn.DataParallel(runner)
    if args.compile:
        runner = torch.compile(runner, backend=args.compile_backend)
    return runner
