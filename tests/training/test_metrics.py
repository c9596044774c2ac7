"""utils/training/metrics.py: top-k counts (also with fewer classes than k), running sums on the device read back
once, soft targets counted by their largest class, and the deferred reads."""
import pytest
import torch

from utils.training.metrics import DeferredReads, MetricSums, correct_topk


def test_top1_and_top5_counts():
    output = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0], [0.9, 0.0, 0.1, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    target = torch.tensor([1, 2, 4])
    assert correct_topk(output, target).tolist() == [1, 3]  # 1 first; 2 second; 4 among the ties in the top 5
    assert correct_topk(output, torch.tensor([1, 2, 0]), topk=(1, 2)).tolist() == [1, 2]


def test_fewer_classes_than_k():
    output = torch.tensor([[0.2, 0.8, 0.0], [0.6, 0.3, 0.1]])
    assert correct_topk(output, torch.tensor([2, 2])).tolist() == [0, 2]  # top-5 of 3 classes: every class


def test_running_sums_and_their_summary():
    sums = MetricSums(torch.device("cpu"))
    output = torch.eye(4)[[0, 1, 2, 3]] * 5
    sums.update(torch.tensor(0.5), output, torch.tensor([0, 1, 2, 0]))  # 3 of 4 right
    sums.update(torch.tensor(1.5), output[:2], torch.tensor([1, 1]))    # 1 of 2 right
    summary = sums.summary()
    assert summary["count"] == 6 and summary["loss"] == pytest.approx((0.5 * 4 + 1.5 * 2) / 6)
    assert summary["top1"] == pytest.approx(100 * 4 / 6) and summary["top5"] == pytest.approx(100.0)
    reduced = sums.reduced()  # one process: the same numbers
    assert reduced.summary() == summary and reduced is not sums
    assert MetricSums(torch.device("cpu")).summary() == {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0}


def test_soft_targets_count_as_their_largest_class():
    sums = MetricSums(torch.device("cpu"))
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.0, 0.8]])  # MixUp / CutMix targets
    sums.update(torch.tensor(1.0), torch.tensor([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0]]), soft)
    assert sums.summary()["top1"] == pytest.approx(50.0) and sums.count == 2


def test_reads_on_the_cpu_are_immediate_copies():
    reads = DeferredReads(torch.device("cpu"))
    live = torch.tensor([1.0, 2.0])
    copy, attached = reads.push(live, "step 10")
    live += 1
    assert copy.tolist() == [1.0, 2.0] and attached == "step 10"
