"""How a run computes: the autocast context, the loss scaler, and the process-wide switches (TF32,
cuDNN autotuning, deterministic algorithms), all set in `set_process_switches` and nowhere else."""
import contextlib

import torch

from ..config.sections import NumericsSettings

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Numerics:
    """Mixed precision is a context plus one scaler object (a no-op unless fp16)."""

    def __init__(self, settings: NumericsSettings):
        self.device = torch.device(settings.device)
        self.dtype = AMP_DTYPES[settings.amp]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)


def set_process_switches(settings: NumericsSettings) -> None:
    """Global torch settings of the run."""
    if settings.device.startswith("cuda"):
        # TF32 convolutions and matmuls, as the official run had by default.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not settings.deterministic
    if settings.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
