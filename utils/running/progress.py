"""What a loop shows while it runs, on the first process only.

In a terminal: a tqdm bar. When the output goes to a file (cluster logs), or with --no-progress: no
carriage returns, one plain line each time the loop reads its metrics (every -p steps), laid out like the
official code's lines so log parsers keep working:

    Epoch: [3][200/5004]	Time 0.214 (0.220)	Data 0.003 (0.004)	Loss 3.1234 (3.2345)	Prec@1 32.812 (30.114)	lr 0.1	img/s 1196

Values are those of the last -p steps, then (in brackets) of the epoch so far. Both forms show the same
numbers.
"""
import sys
from dataclasses import dataclass
from typing import Optional

from tqdm import tqdm

from .distributed import process_rank


@dataclass(frozen=True)
class StepReport:
    epoch: int
    step: int            # steps done
    total: int           # steps in the epoch
    step_s: float        # wall time per step: last interval, epoch so far
    step_s_avg: float
    data_s: float        # time waiting for the loader per step: last interval, epoch so far
    data_s_avg: float
    loss: float
    loss_avg: float
    top1: float
    top1_avg: float
    lr: float
    images_per_s: float  # all processes together


def in_terminal() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def official_line(r: StepReport) -> str:
    return (f"Epoch: [{r.epoch}][{r.step}/{r.total}]\tTime {r.step_s:.3f} ({r.step_s_avg:.3f})\t"
            f"Data {r.data_s:.3f} ({r.data_s_avg:.3f})\tLoss {r.loss:.4f} ({r.loss_avg:.4f})\t"
            f"Prec@1 {r.top1:.3f} ({r.top1_avg:.3f})\tlr {r.lr:.4g}\timg/s {r.images_per_s:.0f}")


class Progress:
    """A bar over `total` steps starting at `initial` (terminal), or lines (files, --no-progress)."""

    def __init__(self, label: str, total: int, initial: int = 0, bars: bool = True):
        first = process_rank() == 0
        self.lines = first and not (bars and in_terminal())
        self.bar = tqdm(total=total, initial=initial, desc=label, disable=not first or self.lines,
                        dynamic_ncols=True, leave=False)

    def advance(self, report: Optional[StepReport] = None) -> None:
        """One step done; `report` when the loop has just read its metrics."""
        if report is not None:
            if self.lines:
                print(official_line(report), flush=True)
            else:
                self.bar.set_postfix(loss=f"{report.loss:.3f}", top1=f"{report.top1:.1f}", lr=f"{report.lr:.3g}",
                                     img_s=f"{report.images_per_s:.0f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
