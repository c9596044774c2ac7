"""utils/training/model_setup.py: the configured model in the chosen ECA form with its checkpoint's weights
loaded strictly, and its placement: memory format, torch.compile for training only, the evaluator never compiled."""
import dataclasses

import pytest
import torch

from models import CheckpointError, WeightsFile, create_model
from tests.helpers import cpu_numerics
from utils.config.sections import LaunchSettings, ModelSettings
from utils.running.distributed import DistContext
from utils.training.model_setup import build_model, wrap_model


def settings(**kw):
    return dataclasses.replace(ModelSettings(arch="eca_resnet18", num_classes=3), **kw)


def test_the_configured_architecture_kernels_classes_and_eca_form():
    model = build_model(settings(k_size=[3, 3, 5, 5]), None, eca_impl="shifted")
    assert model.k_size == [3, 3, 5, 5] and model.fc.out_features == 3
    assert {m.impl for m in model.modules() if type(m).__name__ == "ECA"} == {"shifted"}


def test_checkpoint_weights_are_loaded_strictly(tmp_path):
    torch.manual_seed(1)
    source = create_model("eca_resnet18", num_classes=3)
    path = tmp_path / "w.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_model(settings(), WeightsFile.read(str(path)))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="fc.weight"):
        build_model(settings(num_classes=5), WeightsFile.read(str(path)))


def test_placement_on_the_cpu():
    model = create_model("resnet18", num_classes=3)
    runner, evaluator = wrap_model(model, DistContext(), cpu_numerics(channels_last=True), LaunchSettings(),
                                   training=True)
    assert runner is model and evaluator is model
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_for_training_and_never_for_evaluation():
    model = create_model("resnet18", num_classes=3)
    numerics = cpu_numerics(compile=True, compile_backend="aot_eager")
    runner, evaluator = wrap_model(model, DistContext(), numerics, LaunchSettings(), training=True)
    assert isinstance(runner, torch._dynamo.eval_frame.OptimizedModule) and runner._orig_mod is model
    assert evaluator is model  # evaluation mode and the last, smaller batch would build more graphs
    assert set(runner.state_dict()) != set(model.state_dict())  # why checkpoints save `model`, not the runner
