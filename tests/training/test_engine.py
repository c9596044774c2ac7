"""utils/training/engine.py: the loops take device batches from any input pipeline."""
import pytest
import torch

from models import create_model
from tests.helpers import build_test_pipeline, cpu_numerics, loop_settings, lr_schedule, make_image_folder
from utils.analysis.attention_insight import channel_gates
from utils.data.common import DeviceBatch
from utils.training.engine import EpochPlan, EvalOptions, evaluate, train_one_epoch
from utils.training.numerics import Numerics
from utils.training.schedule import build_scheduler
from utils.training.state import TrainState

CPU_NUMERICS = cpu_numerics()


def test_skip_nonfinite_skips_only_bad_steps():
    """One batch holds a NaN image; with --skip-nonfinite 1 its step is skipped and the weights stay
    finite; the other steps train."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3)
    good = [DeviceBatch(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), [0, 1, 2, 3], 0) for _ in range(3)]
    bad_images = torch.randn(4, 3, 32, 32)
    bad_images[0, 0, 0, 0] = float("nan")
    batches = [good[0], DeviceBatch(bad_images, torch.tensor([0, 1, 2, 0]), [4, 5, 6, 7], 0), good[1], good[2]]

    loop = loop_settings(skip_nonfinite=1, max_skipped=0)
    schedule = lr_schedule("step", 0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    numerics = Numerics(CPU_NUMERICS)
    state = TrainState(model, model, model, optimizer, build_scheduler(optimizer, schedule, 4), numerics.grad_scaler(),
                       numerics, torch.nn.CrossEntropyLoss())
    before = model.conv1.weight.detach().clone()
    result = train_one_epoch(state, batches, loop, EpochPlan(0, 0, 4))
    assert result.nonfinite_steps == 1 and result.steps_done == 4
    assert result.metrics["count"] == 12
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(before, model.conv1.weight)


@pytest.mark.parametrize("backend", ["pil", "tensor", "gpu"])
def test_every_pipeline_feeds_evaluation_and_attention_logging_through_its_stage(tmp_path, backend):
    """The same Data object gives the loops and the attention logger normalised device batches, whatever
    the pipeline (the gpu one used to hand the logger undecoded samples)."""
    root = make_image_folder(tmp_path / "data", n_classes=2, train_per_class=2, val_per_class=3, size=(44, 40))
    data = build_test_pipeline(root, backend, need_train=False, num_classes=2)
    batch = data.first_val_batch(5)
    assert batch.images.dtype == torch.float32 and batch.images.shape == (5, 3, 32, 32)
    assert batch.targets.tolist() == [0, 0, 0, 1, 1] and batch.indices == [0, 1, 2, 3, 4]
    assert -3 < batch.images.mean() < 3  # normalised, not uint8
    model = create_model("eca_resnet18", num_classes=2, eca_impl="fused")
    gates = channel_gates(model, batch.images)
    assert len(gates) == 8 and all(g.shape[0] == 5 for g in gates.values())
    metrics, rows = evaluate(model, data, Numerics(CPU_NUMERICS), torch.nn.CrossEntropyLoss(),
                             EvalOptions(show_progress=False, collect_predictions=True))
    assert metrics["count"] == 6 and [r[0] for r in rows] == list(range(6))
