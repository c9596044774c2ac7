"""utils/training/trainer.py: the epoch loop on a small model and an in-memory pipeline: checkpoints, rows and the
best file per epoch; a stop in the middle of an epoch saves its totals and resumes to the uninterrupted run's
weights and row; a run killed during validation writes that epoch's row when it resumes."""
import contextlib
import csv
import dataclasses
import random

import pytest
import torch
from torch import nn

import main
from tests.helpers import cpu_numerics, lr_schedule
from utils.config.parser import declared_defaults
from utils.config.run_config import RunConfig
from utils.config.sections import SECTIONS
from utils.data.common import DeviceBatch
from utils.errors import RunError
from utils.running.distributed import DistContext
from utils.running.preemption import StopRequest
from utils.running.run_logger import RunLogger
from utils.training import checkpoint as ckpt
from utils.training import trainer as trainer_module
from utils.training.numerics import Numerics
from utils.training.schedule import build_scheduler
from utils.training.state import TrainState
from utils.training.trainer import Trainer, _check_finite_weights, seed_everything

STEPS = 4


class MemoryPipeline:
    """What the trainer uses of an input pipeline, over fixed device batches."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        def batch(i):
            images = torch.randn(4, 3, 8, 8, generator=generator)
            targets = torch.randint(0, 3, (4,), generator=generator)
            return DeviceBatch(images, targets, list(range(4 * i, 4 * i + 4)), 0)
        self.train = [batch(i) for i in range(STEPS)]
        self.val = [batch(STEPS + i) for i in range(2)]
        self.steps_per_epoch, self.val_steps = STEPS, len(self.val)
        self.epochs_started = []

    @contextlib.contextmanager
    def train_epoch(self, epoch, start_step=0):
        self.epochs_started.append((epoch, start_step))
        yield iter(self.train[start_step:])

    @contextlib.contextmanager
    def val_batches(self):
        yield iter(self.val)

    def first_val_batch(self, count):
        return self.val[0]


def make_state(start=0, checkpoint=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    numerics = Numerics(cpu_numerics())
    scheduler = build_scheduler(optimizer, lr_schedule("step", 0.1, epochs=2), STEPS, start)
    return TrainState(model, model, model, optimizer, scheduler, numerics.grad_scaler(), numerics,
                      nn.CrossEntropyLoss())


def make_config(run_dir, epochs=2):
    values = {**declared_defaults(SECTIONS.values()), **main.RECIPE, "data": "/data", "arch": "resnet18", "seed": 3,
              "epochs": epochs, "progress": False, "tensorboard": False}
    config = RunConfig.from_values(values)
    return dataclasses.replace(config, output=dataclasses.replace(config.output, run_dir=str(run_dir)))


def fit(run_dir, state, start=ckpt.Position(), stop=None, epochs=2, pipeline=None):
    config = make_config(run_dir, epochs)
    logger = RunLogger(str(run_dir), True, tensorboard=False)
    trainer = Trainer(state, pipeline or MemoryPipeline(), config, DistContext(), logger)
    return trainer.fit(start, stop or StopRequest(), "python main.py --resume CK")


def rows(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def load(path):
    return torch.load(path, weights_only=True)


def test_every_epoch_writes_its_checkpoint_row_and_the_best(tmp_path, capsys):
    outcome = fit(tmp_path, make_state())
    assert outcome.state == "finished" and outcome.message.startswith("done: best Prec@1 ")
    assert f"checkpoints in {tmp_path}" in outcome.message
    last = load(tmp_path / ckpt.CHECKPOINT_NAME)
    assert (last["epoch"], last["step"]) == (2, 0) and last["epoch_row"]["epoch"] == 1
    assert "epoch_totals" not in last
    assert (tmp_path / ckpt.BEST_NAME).exists()
    logged = rows(tmp_path)
    assert [r["epoch"] for r in logged] == ["0", "1"]
    assert list(logged[0]) == ["epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                               "train_img_s", "epoch_time_s", "skipped_images"]
    out = capsys.readouterr().out
    assert "=> training epochs 0-1, 4 steps each" in out and out.count(" * Prec@1 ") == 2


def test_a_stop_mid_epoch_resumes_to_the_uninterrupted_weights_and_row(tmp_path):
    straight = tmp_path / "straight"
    fit(straight, make_state(), epochs=1)

    split = tmp_path / "split"
    stop = StopRequest()
    stop.signal_name = "SIGTERM"  # as if delivered during the first step
    outcome = fit(split, make_state(), stop=stop, epochs=1)
    assert outcome.state == "stopped"
    assert outcome.message == (f"stopped by SIGTERM at epoch 0 step 1; checkpoint: {split / ckpt.CHECKPOINT_NAME}; "
                               "resume with: python main.py --resume CK")
    stopped = load(split / ckpt.CHECKPOINT_NAME)
    assert (stopped["epoch"], stopped["step"]) == (0, 1) and stopped["epoch_totals"]["count"] == 4
    assert "epoch_row" not in stopped and not (split / "metrics.csv").exists()

    start = ckpt.position_of(stopped)
    pipeline = MemoryPipeline()
    assert fit(split, make_state(start=1, checkpoint=stopped), start=start, epochs=1,
               pipeline=pipeline).state == "finished"
    assert pipeline.epochs_started == [(0, 1)]  # the epoch continued where it stopped
    a, b = load(straight / ckpt.CHECKPOINT_NAME), load(split / ckpt.CHECKPOINT_NAME)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    row_a, row_b = rows(straight)[0], rows(split)[0]
    assert row_a["train_top1"] == row_b["train_top1"]  # over all four steps: the carried ones included
    assert float(row_a["train_loss"]) == pytest.approx(float(row_b["train_loss"]), rel=1e-9)


def test_a_run_killed_during_validation_writes_that_epochs_row_on_resume(tmp_path, monkeypatch):
    real = trainer_module.evaluate

    def killed(*args, **kwargs):
        raise RunError("the node went down during validation")

    monkeypatch.setattr(trainer_module, "evaluate", killed)
    with pytest.raises(RunError):
        fit(tmp_path, make_state(), epochs=1)
    saved = load(tmp_path / ckpt.CHECKPOINT_NAME)  # written before validation: the trained epoch is kept
    assert (saved["epoch"], saved["step"], saved["epoch_row"]["epoch"]) == (1, 0, 0)
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / ckpt.BEST_NAME).exists()

    monkeypatch.setattr(trainer_module, "evaluate", real)
    pipeline = MemoryPipeline()
    outcome = fit(tmp_path, make_state(start=STEPS, checkpoint=saved), start=ckpt.position_of(saved), epochs=1,
                  pipeline=pipeline)
    assert outcome.state == "finished" and pipeline.epochs_started == []  # nothing left to train
    assert [r["epoch"] for r in rows(tmp_path)] == ["0"]
    assert rows(tmp_path)[0]["train_loss"] == str(saved["epoch_row"]["train_loss"])
    assert (tmp_path / ckpt.BEST_NAME).exists()
    fit(tmp_path, make_state(start=STEPS, checkpoint=saved), start=ckpt.position_of(saved), epochs=1)
    assert [r["epoch"] for r in rows(tmp_path)] == ["0"]  # the row is there now: not written twice


def test_a_stop_during_validation_ends_the_run_after_that_epoch(tmp_path, monkeypatch):
    real = trainer_module.evaluate
    stop = StopRequest()

    def signal_arrives(*args, **kwargs):
        stop.signal_name = "SIGUSR1"
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", signal_arrives)
    outcome = fit(tmp_path, make_state(), stop=stop, epochs=2)
    assert outcome.state == "stopped" and "stopped by SIGUSR1 at the end of epoch 0" in outcome.message
    assert load(tmp_path / ckpt.CHECKPOINT_NAME)["epoch"] == 1 and [r["epoch"] for r in rows(tmp_path)] == ["0"]


def test_the_best_so_far_survives_a_resume(tmp_path):
    fit(tmp_path, make_state(), epochs=1)
    best = float(rows(tmp_path)[0]["val_top1"])
    saved = load(tmp_path / ckpt.CHECKPOINT_NAME)
    position = dataclasses.replace(ckpt.position_of(saved), best=0.0)  # a checkpoint that lost its best_prec1
    fit(tmp_path, make_state(start=STEPS, checkpoint=saved), start=position, epochs=2)
    assert load(tmp_path / ckpt.CHECKPOINT_NAME)["best_prec1"] >= best  # metrics.csv remembers it


def test_weights_that_are_no_longer_finite_never_replace_a_checkpoint():
    state = make_state()
    with torch.no_grad():
        state.model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(RunError, match=r"the weights are not finite after epoch 3 \(lr 0.1\): the training diverged"):
        _check_finite_weights(state, 3, 0.1)
    _check_finite_weights(make_state(), 3, 0.1)


def test_each_epoch_is_seeded_from_the_seed_and_the_epoch_only():
    seed_everything(7, 2)
    first = (torch.rand(3), random.random())
    torch.rand(5)
    seed_everything(7, 2)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
    seed_everything(7, 3)
    assert not torch.equal(torch.rand(3), first[0])
