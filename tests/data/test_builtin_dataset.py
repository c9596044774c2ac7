"""The built-in demo dataset: layout, determinism, generated once, safe against interruption."""
import random

import pytest
from PIL import Image
from torchvision import datasets

from utils.data import builtin_dataset
from utils.data.builtin_dataset import BUILTIN_CLASSES, ensure_builtin_dataset, render_sample

SMALL = dict(train_per_class=3, val_per_class=2, image_size=32, progress=False)


def files(root):
    return sorted(p for p in root.rglob("*.jpg"))


def test_layout_and_imagefolder(tmp_path):
    root = ensure_builtin_dataset(tmp_path / "ds", **SMALL)
    train = datasets.ImageFolder(root / "train")
    val = datasets.ImageFolder(root / "val")
    assert train.classes == sorted(BUILTIN_CLASSES) == val.classes
    assert len(train) == 30 and len(val) == 20
    for path in files(root)[:5]:
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.size == (32, 32)


def test_deterministic(tmp_path):
    a = ensure_builtin_dataset(tmp_path / "a", **SMALL)
    b = ensure_builtin_dataset(tmp_path / "b", **SMALL)
    assert [p.read_bytes() for p in files(a)] == [p.read_bytes() for p in files(b)]
    c = ensure_builtin_dataset(tmp_path / "c", seed=1, **SMALL)
    assert [p.read_bytes() for p in files(a)] != [p.read_bytes() for p in files(c)]


def test_generated_once(tmp_path, monkeypatch):
    ensure_builtin_dataset(tmp_path / "ds", **SMALL)
    calls = []
    monkeypatch.setattr(builtin_dataset, "render_sample", lambda *a: calls.append(a))
    ensure_builtin_dataset(tmp_path / "ds", **SMALL)
    assert calls == []


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real, count = builtin_dataset.render_sample, []

    def failing(*args):
        count.append(1)
        if len(count) == 7:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(builtin_dataset, "render_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        ensure_builtin_dataset(tmp_path / "ds", **SMALL)
    assert not (tmp_path / "ds").exists()
    assert list(tmp_path.iterdir()) == [], "the partial folder was left behind"
    monkeypatch.setattr(builtin_dataset, "render_sample", real)
    root = ensure_builtin_dataset(tmp_path / "ds", **SMALL)
    assert len(files(root)) == 50


def test_colour_carries_no_class_information():
    """Mean colour over many samples is alike for every class: only shape or texture separates them."""
    means = []
    for index in range(len(BUILTIN_CLASSES)):
        rng = random.Random(index)
        pixels = [render_sample(index, rng, 16).resize((1, 1)).getpixel((0, 0)) for _ in range(60)]
        means.append([sum(p[c] for p in pixels) / len(pixels) for c in range(3)])
    spread = max(max(m[c] for m in means) - min(m[c] for m in means) for c in range(3))
    assert spread < 45, means


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_the_first_process_announces_the_builtin_dataset(tmp_path, monkeypatch, capsys, rank):
    import main
    from utils.config.resolve import parse_command_line

    monkeypatch.setattr(builtin_dataset, "ensure_builtin_dataset", lambda: tmp_path)
    monkeypatch.setenv("RANK", rank)
    args, _ = parse_command_line(["-a", "eca_resnet18"], main.RECIPE, main.BUILTIN, "")
    assert args.data.data == str(tmp_path)
    assert ("no DIR given" in capsys.readouterr().err) == (rank == "0")
