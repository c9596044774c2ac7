"""utils/training/ema.py: the moving average of the weights follows the decay formula, restarts during warm-up."""
import torch
from torch import nn

from utils.config.sections import EmaSettings
from utils.training.ema import ModelEma, adjusted_decay


def test_decay_is_adjusted_as_torchvision_does():
    settings = EmaSettings(True, 32, 0.99998)
    assert abs(adjusted_decay(settings, global_batch=1024, epochs=600) - (1 - 0.00002 * 1024 * 32 / 600)) < 1e-12
    assert adjusted_decay(EmaSettings(True, 32, 0.5), 1024, 1) == 0.0  # alpha capped at 1: the model itself


def test_average_follows_the_decay_every_n_steps():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = ModelEma(model, EmaSettings(True, 2, 0.9), global_batch=1, epochs=1)  # decay 1 - 0.1 * 2 = 0.8
    assert abs(ema.decay - 0.8) < 1e-12
    expected = model.weight.detach().clone()
    for step in range(6):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.after_step(model, step, warming_up=False)
        if (step + 1) % 2 == 0:  # updates after steps 1, 3, 5; the first copies the model
            first = step == 1
            expected = model.weight.detach().clone() if first else 0.8 * expected + 0.2 * model.weight.detach()
    assert torch.allclose(ema.module.weight, expected)
    assert not torch.allclose(ema.module.weight, model.weight)


def test_during_warm_up_the_average_is_the_model():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, EmaSettings(True, 1, 0.9), global_batch=1, epochs=1)
    for step in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.after_step(model, step, warming_up=True)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.after_step(model, 3, warming_up=False)
    assert torch.allclose(ema.module.weight, model.weight)  # restarted at the last warm-up update: a copy


def test_state_round_trips():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, EmaSettings(True, 1, 0.9), 1, 1)
    ema.after_step(model, 0, False)
    other = ModelEma(nn.Linear(3, 2), EmaSettings(True, 1, 0.9), 1, 1)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight) and int(other.averaged.n_averaged) == 1
