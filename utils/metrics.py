"""Classification metrics that stay on the device until read, and reduce across processes."""
from typing import Sequence

import torch

from .distributed import all_reduce_sum


def correct_topk(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5)) -> torch.Tensor:
    """Number of samples whose target is among the top-k predictions, for each k (a device tensor).
    Uses reshape, not view, on the transposed prediction tensor (a crash in the official accuracy())."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, dim=1).indices  # (N, maxk)
    hits = pred.eq(target[:, None])
    return torch.stack([hits[:, : min(k, maxk)].reshape(-1).sum() for k in topk])


class MetricSums:
    """Running sums (loss * n, correct@1, correct@5, n) kept as one device tensor: no host sync per step."""

    def __init__(self, device):
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)

    def update(self, loss: torch.Tensor, output: torch.Tensor, target: torch.Tensor) -> None:
        n = target.shape[0]
        correct = correct_topk(output.detach(), target)
        batch = torch.stack([loss.detach().double() * n, correct[0].double(), correct[1].double(),
                             torch.tensor(float(n), dtype=torch.float64, device=target.device)])
        self.sums += batch.to(self.sums.device)

    def reduced(self) -> "MetricSums":
        out = MetricSums(self.sums.device)
        out.sums = all_reduce_sum(self.sums.clone())
        return out

    def summary(self) -> dict:
        loss_sum, top1, top5, n = self.sums.tolist()
        n_safe = max(n, 1.0)
        return {"loss": loss_sum / n_safe, "top1": 100.0 * top1 / n_safe, "top5": 100.0 * top5 / n_safe,
                "count": int(n)}
