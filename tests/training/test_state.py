"""utils/training/state.py: optimizers and weight-decay groups as torchvision's recipes set them, and
gradient clipping in the training step."""
import torch
from torch import nn

from models import create_model
from tests.helpers import cpu_numerics, loop_settings, lr_schedule
from utils.config.sections import OptimSettings
from utils.data.common import DeviceBatch
from utils.training.engine import EpochPlan, train_one_epoch
from utils.training.numerics import Numerics
from utils.training.schedule import build_scheduler
from utils.training.state import TrainState, build_optimizer, parameter_groups


def optim(**kw):
    base = dict(opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, norm_weight_decay=None, clip_grad_norm=None)
    return OptimSettings(**{**base, **kw})


def test_optimizers():
    model = create_model("resnet18", num_classes=3)
    sgd = build_optimizer(model, optim())
    assert isinstance(sgd, torch.optim.SGD) and not sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert build_optimizer(model, optim(opt="sgd_nesterov")).defaults["nesterov"]
    adamw = build_optimizer(model, optim(opt="adamw", lr=1e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05


def test_norm_layers_get_their_own_weight_decay():
    model = create_model("eca_resnet18", num_classes=3)
    groups = parameter_groups(model, optim(norm_weight_decay=0.0))
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == bn and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == 1e-4 and not bn & {id(p) for p in groups[0]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    assert len(parameter_groups(model, optim())) == 1


def test_clip_grad_norm_bounds_the_update():
    """With lr 1 and no momentum, SGD's update is the gradient itself: its norm is the clipped norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    numerics = Numerics(cpu_numerics())
    state = TrainState(model, model, model, optimizer, build_scheduler(optimizer, lr_schedule("step", 1.0), 1),
                       numerics.grad_scaler(), numerics, nn.CrossEntropyLoss(), clip_grad_norm=0.5)
    images = torch.randn(4, 3, 4, 4) * 100  # large inputs: an unclipped gradient would be far longer
    loop = loop_settings()
    train_one_epoch(state, [DeviceBatch(images, torch.tensor([0, 1, 2, 0]), [0, 1, 2, 3], 0)], loop, EpochPlan(0, 0, 1))
    update = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert abs(update.norm().item() - 0.5) < 1e-5
