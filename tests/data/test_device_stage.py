"""The device stage the loops iterate: the same batches in the same order whether it prepares one batch ahead
(the gpu pipeline) or not, with the next batch prepared before the current one is handed out. The CUDA side
stream itself is checked on a GPU by tests/gpu/test_cuda_paths.py."""
import torch

from tests.helpers import build_test_pipeline, make_image_folder
from utils.data.common import DeviceBatch, HostBatch
from utils.data.device_stage import DeviceStage

CPU = torch.device("cpu")


class RecordingStage:
    """A backend stage that logs when each batch is prepared."""

    def __init__(self, log):
        self.log = log

    def __call__(self, batch: HostBatch) -> DeviceBatch:
        self.log.append(("prepared", batch.indices[0]))
        return DeviceBatch(batch.images * 2, batch.targets, batch.indices, batch.skipped)


def host_batches(count):
    return [HostBatch(torch.full((2, 3, 4, 4), float(i)), torch.tensor([i, i]), [i, i], 0) for i in range(count)]


def test_ahead_prepares_the_next_batch_before_handing_out_the_current_one():
    log = []
    stage = DeviceStage(RecordingStage(log), CPU, ahead=True)
    for batch in stage.stream(host_batches(3)):
        log.append(("used", batch.indices[0]))
    assert log == [("prepared", 0), ("prepared", 1), ("used", 0), ("prepared", 2), ("used", 1), ("used", 2)]


def test_ahead_and_plain_give_the_same_batches_also_without_readable_images():
    hosts = host_batches(3) + [HostBatch(None, None, [], 4)]
    plain = list(DeviceStage(RecordingStage([]), CPU).stream(hosts))
    ahead = list(DeviceStage(RecordingStage([]), CPU, ahead=True).stream(hosts))
    assert len(plain) == len(ahead) == 4
    for a, b in zip(plain[:3], ahead[:3]):
        assert torch.equal(a.images, b.images) and a.indices == b.indices
    assert ahead[3].images is None and ahead[3].skipped == 4


def test_only_the_gpu_pipeline_prepares_ahead(tmp_path):
    root = make_image_folder(tmp_path / "data", train_per_class=1, val_per_class=1)
    assert build_test_pipeline(root, "gpu", need_train=False).stage.ahead
    assert not build_test_pipeline(root, "tensor", need_train=False).stage.ahead
    assert not build_test_pipeline(root, "pil", need_train=False).stage.ahead


def test_gpu_pipeline_batches_through_the_loop_stage_equal_the_one_at_a_time_stage(tmp_path):
    root = make_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    data = build_test_pipeline(root, "gpu", seed=3)
    hosts = list(data.train_loader)
    ahead = list(data.stage.stream(hosts))
    assert len(ahead) == len(hosts) == 3
    for batch, host in zip(ahead, hosts):
        one = data.stage(host)
        assert torch.equal(batch.images, one.images) and torch.equal(batch.targets, one.targets)
