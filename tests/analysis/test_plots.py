"""utils/analysis/plots.py and scripts/plot_run.py: PNGs written and readable; matplotlib missing is one line."""
import builtins
import csv

import pytest
from PIL import Image

from scripts import plot_run
from utils.analysis import plots
from utils.errors import UserError


def write_metrics(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(folder)


def rows(n, scale=1.0):
    return [{"epoch": e, "lr": 0.1 * 0.5 ** e, "train_loss": 2.0 / (e + 1), "train_top1": 10 * e * scale,
             "val_loss": 2.1 / (e + 1), "val_top1": 9 * e * scale, "val_top5": 50} for e in range(n)]


def test_two_runs_side_by_side(tmp_path, capsys):
    a, b = write_metrics(tmp_path / "a", rows(4)), write_metrics(tmp_path / "b", rows(3, 0.5))
    out = tmp_path / "curves.png"
    assert plot_run.main([a, b, "--labels", "ECA,plain", "--png", str(out)]) == 0
    image = Image.open(out)
    image.load()
    assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 300
    assert "wrote" in capsys.readouterr().out


def test_attention_picture(tmp_path):
    import torch

    out = tmp_path / "att.png"
    plots.plot_attention({"layer1.0.eca": [0.1, -0.5, 0.3]}, {"layer1.0.eca": torch.rand(4, 8)}, "m", str(out))
    assert Image.open(out).size[0] > 600


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(UserError, match="holds metrics.csv"):
        plot_run.main([str(tmp_path / "none"), "--png", str(tmp_path / "x.png")])
    run = write_metrics(tmp_path / "a", rows(2))
    with pytest.raises(UserError, match="one name per run"):
        plot_run.main([run, "--labels", "a,b", "--png", str(tmp_path / "x.png")])
    with pytest.raises(UserError, match="--png"):
        plot_run.main([run, "--png", str(tmp_path / "a" / "metrics.csv" / "x.png")])


def test_missing_matplotlib_is_one_line(monkeypatch, tmp_path):
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UserError, match=r"pip install -r requirements-plot.txt"):
        plots.plot_runs([write_metrics(tmp_path / "a", rows(2))], ["a"], str(tmp_path / "x.png"))
