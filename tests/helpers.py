"""Small data and command helpers shared by the tests."""
import os
import subprocess
import sys
from typing import Sequence

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (200, 40, 200)]


def make_image_folder(root, n_classes=3, train_per_class=16, val_per_class=5, size=(40, 48), splits=("train", "val")):
    """An ImageFolder tree whose classes differ by colour (learnable in a few steps), JPEG files
    of a non-square size so resize and crop paths are exercised. Returns str(root)."""
    counts = {"train": train_per_class, "val": val_per_class}
    for split in splits:
        for c in range(n_classes):
            folder = os.path.join(root, split, f"class{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(counts[split]):
                shade = (i * 37) % 60 - 30  # deterministic variation within a class
                colour = tuple(max(0, min(255, v + shade)) for v in COLOURS[c])
                image = Image.new("RGB", size, colour)
                # A darker square at a varying place, so images of a class are not identical.
                image.paste(tuple(v // 2 for v in colour), (i % 20, i % 24, i % 20 + 12, i % 24 + 12))
                image.save(os.path.join(folder, f"img{i}.jpg"), quality=95)
    return str(root)


def run_script(script: str, args: Sequence[str], cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# Flags that keep a CLI run tiny and quick on 2 CPU cores.
TINY = ["-b", "8", "--crop-size", "32", "--val-resize", "36", "-j", "0", "--no-progress", "--no-tensorboard"]


def photo_like(path, size=(180, 140), seed=0):
    """Smooth gradients plus texture: resizing differences show up, unlike on flat colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) % 64 * 4], -1)
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=95)
    return path
