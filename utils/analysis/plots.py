"""Pictures people read: a run's curves from metrics.csv (several runs side by side), and what the attention
layers learned (each ECA kernel's taps, each layer's channel-gate histogram), with axes, labels and legends.

matplotlib is optional (requirements-plot.txt): it is imported only here, only when a picture is asked for,
with the non-interactive Agg backend (no display needed on a cluster node).
"""
import csv
import os
from typing import Dict, List, Sequence

from ..errors import UserError
from ..running.files import atomic_write


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("drawing a PNG needs matplotlib: pip install -r requirements-plot.txt") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: str) -> Dict[str, List[float]]:
    """metrics.csv of a run folder as columns of floats (empty cells dropped with their row's epoch kept)."""
    path = os.path.join(run_dir, "metrics.csv") if os.path.isdir(run_dir) else run_dir
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc}): give a run folder that holds metrics.csv") from None
    if not rows or "epoch" not in rows[0]:
        raise UserError(f"{path} holds no epoch rows yet: the run has not finished an epoch")
    columns: Dict[str, List[float]] = {}
    for key in rows[0]:
        try:
            columns[key] = [float(row[key]) if row.get(key) not in (None, "") else float("nan") for row in rows]
        except ValueError:
            continue
    return columns


def _save(fig, path: str) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def plot_runs(run_dirs: Sequence[str], labels: Sequence[str], path: str) -> None:
    """Loss, top-1 and learning rate against epoch: train dashed, validation solid, one colour per run."""
    plt = _pyplot()
    runs = [(label, read_metrics(run)) for run, label in zip(run_dirs, labels)]
    fig, (loss_ax, top1_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    for index, (label, m) in enumerate(runs):
        colour = f"C{index % 10}"
        epochs = m["epoch"]
        for ax, key in ((loss_ax, "loss"), (top1_ax, "top1")):
            if f"train_{key}" in m:
                ax.plot(epochs, m[f"train_{key}"], "--x", markersize=4, color=colour, label=f"{label} train")
            if f"val_{key}" in m:
                ax.plot(epochs, m[f"val_{key}"], "-o", color=colour, markersize=3, label=f"{label} val")
        if "lr" in m:
            lr_ax.plot(epochs, m["lr"], "-o", markersize=3, color=colour, label=label)
    for ax, title, ylabel in ((loss_ax, "loss", "cross-entropy"), (top1_ax, "top-1 accuracy", "top-1 (%)"),
                              (lr_ax, "learning rate (at the epoch's last step)", "lr")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if all(min(m.get("lr", [1.0])) > 0 for _, m in runs):
        lr_ax.set_yscale("log")
    _save(fig, path)
    plt.close(fig)


def plot_attention(kernels: Dict[str, List[float]], gates: Dict[str, "object"], title: str, path: str) -> None:
    """Left: every ECA layer's kernel taps (one line per layer, tap offset from the centre channel on x).
    Right, with validation gates: the distribution of each layer's channel gates (one line per layer)."""
    plt = _pyplot()
    columns = 2 if gates else 1
    fig, axes = plt.subplots(1, columns, figsize=(7 * columns, 4.8), squeeze=False)
    taps_ax = axes[0][0]
    for index, (name, taps) in enumerate(kernels.items()):
        centre = (len(taps) - 1) // 2
        taps_ax.plot([i - centre for i in range(len(taps))], taps, "-o", markersize=3, color=f"C{index % 10}",
                     label=f"{name} (k={len(taps)})")
    taps_ax.axhline(0, color="black", linewidth=0.6)
    taps_ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    taps_ax.set_title(f"{title}: ECA kernel taps")
    taps_ax.set_xlabel("tap (channel offset from the centre)")
    taps_ax.set_ylabel("weight")
    taps_ax.grid(alpha=0.3)
    if kernels:
        taps_ax.legend(fontsize=6, ncol=2)
    if gates:
        import numpy as np

        hist_ax = axes[0][1]
        bins = np.linspace(0.0, 1.0, 41)
        for index, (name, values) in enumerate(gates.items()):
            counts, _ = np.histogram(np.asarray(values, dtype=float).ravel(), bins=bins, density=True)
            hist_ax.plot((bins[:-1] + bins[1:]) / 2, counts, color=f"C{index % 10}", label=name)
        hist_ax.set_title("channel-gate distribution on validation images")
        hist_ax.set_xlabel("gate value σ(·)")
        hist_ax.set_ylabel("density")
        hist_ax.set_xlim(0, 1)
        hist_ax.grid(alpha=0.3)
        hist_ax.legend(fontsize=6, ncol=2)
    _save(fig, path)
    plt.close(fig)
