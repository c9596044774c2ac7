"""utils/training/checkpoint.py: what a checkpoint holds (the official keys and what a resume reads, no scheduler,
rng or time), where it stands (nonsense such as epoch = -5 refused), and the files written atomically, the best
one from the same bytes."""
import math

import pytest
import torch
from torch import nn

import main
from models import CheckpointError
from tests.helpers import cpu_numerics
from utils.config.parser import declared_defaults
from utils.config.run_config import RunConfig
from utils.config.sections import SECTIONS
from utils.running.files import TEMP_TAG
from utils.training import checkpoint as ckpt
from utils.training.checkpoint import Position, payload, position_of, save, save_best, start_position
from utils.training.numerics import Numerics
from utils.training.schedule import build_scheduler
from utils.training.state import TrainState
from tests.helpers import lr_schedule


def test_a_fresh_position():
    assert Position() == Position(0, 0, 0.0, {}, {})
    assert start_position(None, None) == Position()
    assert start_position(None, 4) == Position(4, 0, 0.0)


def test_the_position_of_a_checkpoint():
    checkpoint = {"epoch": 3, "step": 17, "best_prec1": 41.5, "epoch_totals": {"count": 68.0}}
    assert position_of(checkpoint) == Position(3, 17, 41.5, {"count": 68.0}, {})
    row = {"epoch": 2, "train_loss": 1.0}
    assert position_of({"epoch": 3, "epoch_row": row}).row == row
    # The official files: a 0-d tensor as best_prec1, no step.
    assert position_of({"epoch": 100, "best_prec1": torch.tensor(70.9)}) == Position(100, 0, pytest.approx(70.9))
    assert position_of({"epoch": torch.tensor(5), "step": torch.tensor([2])}) == Position(5, 2)
    assert position_of({}) == Position()


def test_a_non_finite_best_counts_as_none():
    assert position_of({"epoch": 1, "best_prec1": float("nan")}).best == 0.0
    assert position_of({"epoch": 1, "best_prec1": torch.tensor(math.inf)}).best == 0.0


def test_malformed_totals_and_rows_are_ignored():
    position = position_of({"epoch": 1, "epoch_totals": [1, 2], "epoch_row": "text"})
    assert position.totals == {} and position.row == {}


@pytest.mark.parametrize("key,value", [("epoch", -5), ("step", -1), ("epoch", 2.5), ("step", "7"), ("epoch", True),
                                       ("epoch", None), ("step", torch.tensor([1, 2]))])
def test_nonsense_positions_are_refused(key, value):
    with pytest.raises(CheckpointError) as info:
        position_of({"epoch": 1, key: value}, "/runs/x/checkpoint.pth.tar")
    message = str(info.value)
    assert message.startswith(f"/runs/x/checkpoint.pth.tar says {key} = {value!r}, which is not a count")
    assert "resume from a checkpoint this project wrote" in message


def test_start_epoch_overrides_the_checkpoint_but_keeps_the_best():
    checkpoint = {"epoch": 3, "step": 17, "best_prec1": 41.5, "epoch_totals": {"count": 68.0}}
    assert start_position(checkpoint, 1) == Position(1, 0, 41.5)
    assert start_position(checkpoint, None) == position_of(checkpoint)
    with pytest.raises(CheckpointError):
        start_position({"epoch": -5}, None, "c.pth.tar")


def small_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    numerics = Numerics(cpu_numerics())
    return TrainState(model, model, model, optimizer, build_scheduler(optimizer, lr_schedule(), 1),
                      numerics.grad_scaler(), numerics, nn.CrossEntropyLoss())


def config():
    values = {**declared_defaults(SECTIONS.values()), **main.RECIPE, "data": "/data", "arch": "resnet18", "seed": 3}
    return RunConfig.from_values(values)


def test_the_payload_holds_the_official_keys_and_what_a_resume_reads():
    state, cfg = small_state(), config()
    out = payload(state, cfg, Position(2, 0, 55.0, row={"epoch": 1, "train_loss": 0.5}))
    assert set(out) == {"state_dict", "optimizer", "scaler", "epoch", "step", "arch", "best_prec1", "k_size",
                        "num_classes", "class_names", "args", "epoch_row"}
    assert (out["epoch"], out["step"], out["arch"], out["best_prec1"]) == (2, 0, "resnet18", 55.0)
    assert out["args"] == cfg.as_dict() and out["args"]["seed"] == 3 and out["epoch_row"]["train_loss"] == 0.5
    assert not {"scheduler", "rng", "saved_at"} & set(out)  # never read on resume: the rate follows epoch and step
    mid = payload(state, cfg, Position(2, 5, 55.0, totals={"count": 20.0}))
    assert mid["epoch_totals"] == {"count": 20.0} and "epoch_row" not in mid and mid["step"] == 5


def test_saved_files_are_weights_only_loadable_and_the_best_is_the_same_bytes(tmp_path):
    state, cfg = small_state(), config()
    path = save(payload(state, cfg, Position(1, 0, 10.0)), str(tmp_path))
    assert path == str(tmp_path / ckpt.CHECKPOINT_NAME)
    loaded = torch.load(path, weights_only=True)
    assert position_of(loaded, path) == Position(1, 0, 10.0)
    for key, value in state.model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value), key
    save_best(payload(state, cfg, Position(2, 0, 20.0)), str(tmp_path))
    best, last = (tmp_path / ckpt.BEST_NAME).read_bytes(), (tmp_path / ckpt.CHECKPOINT_NAME).read_bytes()
    assert best == last and torch.load(tmp_path / ckpt.BEST_NAME, weights_only=True)["best_prec1"] == 20.0
    assert not [name for name in __import__("os").listdir(tmp_path) if TEMP_TAG in name]
