"""utils/config/run_config.py: the run's configuration of sections, its flat record (args.json, checkpoints'
`args`) and the checks that relate options of different sections."""
import dataclasses
import json

import pytest

import main
from utils.config import run_config
from utils.config.parser import declared_defaults
from utils.config.run_config import RunConfig, _plain
from utils.config.sections import SECTIONS
from utils.errors import UserError


def values(**kw):
    return {**declared_defaults(SECTIONS.values()), **main.RECIPE, "data": "/data", **kw}


def test_every_section_is_built_from_the_parsed_values():
    config = RunConfig.from_values(values(epochs=3, opt="adamw", mixup_alpha=0.2))
    assert [f.name for f in dataclasses.fields(config)] == list(SECTIONS)
    for name, cls in SECTIONS.items():
        assert type(getattr(config, name)) is cls
    assert (config.loop.epochs, config.optim.opt, config.mix.mixup_alpha, config.model.arch) == \
        (3, "adamw", 0.2, "eca_resnet50")


def test_the_flat_record_has_one_plain_value_per_name():
    config = RunConfig.from_values(values(seed=4))
    flat = config.as_dict()
    names = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert sorted(flat) == sorted(names)  # options and derived fields, each once
    assert flat["seed"] == 4 and flat["lr"] == 0.1 and flat["data"] == "/data" and flat["class_names"] == []
    assert json.loads(json.dumps(flat)) == flat  # JSON-safe as it is


def test_plain_values_are_json_and_weights_only_safe():
    class Odd:
        def __str__(self):
            return "odd"

    assert _plain({"a": (1, 2.5, None), "b": [True, "x"], "c": Odd()}) == {"a": [1, 2.5, None], "b": [True, "x"],
                                                                         "c": "odd"}


@pytest.mark.parametrize("kw,message", [
    ({"warmup_epochs": 6.0, "epochs": 5}, "--warmup-epochs 6.0 is longer than --epochs 5: the schedule would never "
                                          "leave the warm-up"),
    ({"start_epoch": 5, "epochs": 5}, "--start-epoch 5 is not before --epochs 5: nothing to train; raise --epochs"),
    ({"predictions": "p.csv"}, "--predictions is written by an evaluation: add -e"),
    ({"auto_augment": "ra", "data_backend": "gpu"}, "--auto-augment and --random-erase work on decoded images"),
    ({"random_erase": 0.1, "data_backend": "gpu"}, "use --data-backend tensor or pil"),
])
def test_options_of_different_sections_are_checked_together(kw, message):
    with pytest.raises(UserError) as info:
        RunConfig.from_values(values(**kw))
    assert message in str(info.value)


def test_combinations_that_are_fine():
    assert RunConfig.from_values(values(warmup_epochs=5.0, epochs=5)).schedule.warmup_epochs == 5.0
    assert RunConfig.from_values(values(auto_augment="ra", data_backend="tensor")).augment.auto_augment == "ra"


def test_a_name_declared_twice_is_refused_when_the_module_loads(monkeypatch):
    from utils.config.sections import LoopSettings, OptimSettings

    @dataclasses.dataclass(frozen=True)
    class Clash(OptimSettings):
        epochs: int = 1  # also LoopSettings.epochs

    monkeypatch.setattr(run_config, "SECTIONS", {"optim": Clash, "loop": LoopSettings})
    with pytest.raises(RuntimeError, match="option 'epochs' is declared in both optim and loop"):
        run_config._unique_names()
