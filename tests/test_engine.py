"""utils/engine.py: the loops take host batches from any input pipeline through its device stage."""
import pytest
import torch

from models import create_model
from tests.helpers import make_image_folder
from utils.attention_insight import channel_gates
from utils.config import LoopSettings, NumericsSettings, ScheduleSettings
from utils.data import DataSettings, build_data, make_stage
from utils.data.common import HostBatch
from utils.distributed import DistContext
from utils.engine import EpochPlan, EvalOptions, evaluate, train_one_epoch
from utils.numerics import Numerics
from utils.schedule import build_scheduler
from utils.training_state import TrainState

CPU_NUMERICS = NumericsSettings("cpu", "none", False, False, "inductor", False)


def test_skip_nonfinite_skips_only_bad_steps():
    """One batch holds a NaN image; with --skip-nonfinite 1 its step is skipped and the weights stay
    finite; the other steps train."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3)
    good = [HostBatch(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), [0, 1, 2, 3], 0) for _ in range(3)]
    bad_images = torch.randn(4, 3, 32, 32)
    bad_images[0, 0, 0, 0] = float("nan")
    batches = [good[0], HostBatch(bad_images, torch.tensor([0, 1, 2, 0]), [4, 5, 6, 7], 0), good[1], good[2]]

    loop = LoopSettings(epochs=1, print_freq=1, skip_nonfinite=1, max_skipped=0, label_smoothing=0.0, progress=False)
    schedule = ScheduleSettings("step", 0.01, 30, 0.1, 0.0, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    numerics = Numerics(CPU_NUMERICS)
    state = TrainState(model, model, model, optimizer, build_scheduler(optimizer, schedule, 4), numerics.grad_scaler(),
                       numerics, torch.nn.CrossEntropyLoss())
    before = model.conv1.weight.detach().clone()
    stage = make_stage("pil", torch.device("cpu"), channels_last=False)
    result = train_one_epoch(state, batches, stage, loop, EpochPlan(0, 0, 4))
    assert result.nonfinite_steps == 1 and result.steps_done == 4
    assert result.metrics["count"] == 12
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(before, model.conv1.weight)


@pytest.mark.parametrize("backend", ["pil", "tensor", "gpu"])
def test_every_pipeline_feeds_evaluation_and_attention_logging_through_its_stage(tmp_path, backend):
    """The same Data object gives the loops and the attention logger normalised device batches, whatever
    the pipeline (the gpu one used to hand the logger undecoded samples)."""
    root = make_image_folder(tmp_path / "data", n_classes=2, train_per_class=2, val_per_class=3, size=(44, 40))
    settings = DataSettings(data=root, data_backend=backend, train_crop_size=32, val_crop_size=32, crop_scale=0.08, val_resize=36,
                            per_process_batch=4, workers=0, seed=0, skip_corrupt=False, num_classes=2,
                            channels_last=False)
    data = build_data(settings, DistContext(), need_train=False)
    batch = data.first_val_batch(5)
    assert batch.images.dtype == torch.float32 and batch.images.shape == (5, 3, 32, 32)
    assert batch.targets.tolist() == [0, 0, 0, 1, 1] and batch.indices == [0, 1, 2, 3, 4]
    assert -3 < batch.images.mean() < 3  # normalised, not uint8
    model = create_model("eca_resnet18", num_classes=2, eca_impl="fused")
    gates = channel_gates(model, batch.images)
    assert len(gates) == 8 and all(g.shape[0] == 5 for g in gates.values())
    metrics, rows = evaluate(model, data.val_loader, data.stage, Numerics(CPU_NUMERICS), torch.nn.CrossEntropyLoss(),
                             EvalOptions(show_progress=False, collect_predictions=True))
    assert metrics["count"] == 6 and [r[0] for r in rows] == list(range(6))
