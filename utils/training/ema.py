"""An exponential moving average of the weights, kept beside the model (torch.optim.swa_utils.AveragedModel),
with torchvision's recipe for the decay: the given decay is per image at a reference, so it is adjusted to
the global batch, the update interval and the number of epochs, and the average restarts from the model at
each update during the learning-rate warm-up."""
from typing import Any, Dict

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config.sections import EmaSettings


def adjusted_decay(settings: EmaSettings, global_batch: int, epochs: int) -> float:
    """torchvision's adjustment: alpha = (1 - decay) * batch * steps / epochs, at most 1."""
    alpha = (1.0 - settings.model_ema_decay) * global_batch * settings.model_ema_steps / epochs
    return 1.0 - min(1.0, alpha)


class ModelEma:
    def __init__(self, model: nn.Module, settings: EmaSettings, global_batch: int, epochs: int):
        self.every = settings.model_ema_steps
        self.decay = adjusted_decay(settings, global_batch, epochs)
        # use_buffers: BatchNorm's running statistics are averaged too, so the average is a model that works.
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def after_step(self, model: nn.Module, global_step: int, warming_up: bool) -> None:
        """Called after every optimizer step with the step's global index (0-based)."""
        if (global_step + 1) % self.every:
            return
        self.averaged.update_parameters(model)
        if warming_up:
            self.averaged.n_averaged.fill_(0)  # the next update copies the model instead of averaging

    def state_dict(self) -> Dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
