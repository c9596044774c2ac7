"""Classification metrics that stay on the device until read, and reduce across processes."""
from typing import Sequence

import torch

from ..running.distributed import all_reduce_sum


def correct_topk(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5)) -> torch.Tensor:
    """Number of samples whose target is among the top-k predictions, for each k (a device tensor).
    reshape, not view: the column slice of the prediction matrix is not contiguous."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices  # (N, maxk)
    hits = pred.eq(target[:, None])
    return torch.stack([hits[:, : min(k, maxk)].reshape(-1).sum() for k in topk])


class MetricSums:
    """Running sums of loss * n, correct@1 and correct@5 kept on the device, and the sample count on the
    host: updating them never copies between host and device, so the training step never waits."""

    def __init__(self, device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, loss: torch.Tensor, output: torch.Tensor, target: torch.Tensor) -> None:
        """`target`: class indices, or class probabilities (MixUp/CutMix), counted as their largest class."""
        if target.dim() == 2:
            target = target.argmax(1)
        n = target.shape[0]
        correct = correct_topk(output.detach(), target).double()
        self.sums += torch.stack([loss.detach().double() * n, correct[0], correct[1]]).to(self.sums.device)
        self.count += n

    def reduced(self) -> "MetricSums":
        """The sums over all processes (one all-reduce, e.g. once per epoch)."""
        packed = torch.cat([self.sums, torch.tensor([float(self.count)], dtype=torch.float64,
                                                    device=self.sums.device)])
        packed = all_reduce_sum(packed)
        out = MetricSums(self.sums.device)
        out.sums, out.count = packed[:3], int(packed[3].item())
        return out

    def summary(self) -> dict:
        loss_sum, top1, top5 = self.sums.tolist()
        n = max(self.count, 1)
        return {"loss": loss_sum / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "count": self.count}


class DeferredReads:
    """Reads the running sums every -p steps without making the host wait for the device: each push starts
    an asynchronous copy into pinned memory and returns the copy started by the previous push (finished
    long since), with what was attached to it. Waiting on the current values would drain the GPU's queue
    of launched work every -p steps. On the CPU the copy is immediate and returned at once."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pending = None

    def push(self, sums: torch.Tensor, attached):
        """(host copy of earlier sums, what was attached to them), or None for the first push on a GPU."""
        if self.device.type != "cuda":
            return sums.clone(), attached
        host = torch.empty(sums.shape, dtype=sums.dtype, pin_memory=True)
        host.copy_(sums, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self.pending = self.pending, (host, event, attached)
        if previous is None:
            return None
        previous[1].synchronize()
        return previous[0], previous[2]
