"""The built-in demo dataset: 10 classes of shapes and textures, drawn procedurally into real JPEG
files in ImageFolder layout, generated once into a cache folder.

Colours, position, size and rotation are random per image, so only the shape or texture tells the
class: a small CNN learns it well above chance (10%) within CPU minutes, yet not instantly.
"""
import contextlib
import fcntl
import math
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFilter

from ..errors import UserError
from ..running.files import OutputWriteError, atomic_write

BUILTIN_CLASSES = ("circle", "square", "triangle", "cross", "ring", "stripes_h", "stripes_v", "checker",
                   "dots", "diamond")
_VERSION = "builtin-shapes-v1"


def default_cache_dir() -> Path:
    if os.environ.get("ECA_DATA_CACHE"):
        return Path(os.environ["ECA_DATA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "eca-net" / _VERSION


def _colour(rng: random.Random):
    return tuple(rng.randrange(256) for _ in range(3))


def _distinct_colours(rng: random.Random):
    """Foreground and background that differ enough to see the shape, in any hue."""
    while True:
        fg, bg = _colour(rng), _colour(rng)
        if sum(abs(a - b) for a, b in zip(fg, bg)) > 150:
            return fg, bg


def _polygon(cx, cy, radius, sides, angle):
    return [(cx + radius * math.cos(angle + 2 * math.pi * i / sides),
             cy + radius * math.sin(angle + 2 * math.pi * i / sides)) for i in range(sides)]


def _draw_shape(draw, name, shape, fg, bg):
    """`shape`: (centre x, centre y, radius, rotation angle)."""
    cx, cy, r, angle = shape
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        draw.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=bg)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, r, 4, angle), fill=fg)
    elif name == "diamond":
        # A rhombus: elongated along one axis, which separates it from the square at any rotation.
        pts = [(0, -r), (r * 0.55, 0), (0, r), (-r * 0.55, 0)]
        c, s = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=fg)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, angle), fill=fg)
    elif name == "cross":
        w = r * 0.35
        for a in (angle, angle + math.pi / 2):
            c, s = math.cos(a), math.sin(a)
            pts = [(-r, -w), (r, -w), (r, w), (-r, w)]
            draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=fg)


def _draw_texture(draw, name, size, rng, fg):
    period = rng.randint(max(4, size // 10), max(6, size // 5))
    phase = rng.randrange(period)
    half = max(1, period // 2)
    if name == "stripes_h":
        for y in range(-phase, size, period):
            draw.rectangle([0, y, size, y + half - 1], fill=fg)
    elif name == "stripes_v":
        for x in range(-phase, size, period):
            draw.rectangle([x, 0, x + half - 1, size], fill=fg)
    elif name == "checker":
        for y in range(-phase, size, half):
            for x in range(-phase, size, half):
                if ((x + phase) // half + (y + phase) // half) % 2 == 0:
                    draw.rectangle([x, y, x + half - 1, y + half - 1], fill=fg)
    elif name == "dots":
        radius = max(1, period // 4)
        for y in range(-phase, size + period, period):
            for x in range(-phase, size + period, period):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fg)


def render_sample(class_index: int, rng: random.Random, image_size: int) -> Image.Image:
    """One RGB image of class `class_index`, drawn with the randomness of `rng`."""
    name = BUILTIN_CLASSES[class_index]
    fg, bg = _distinct_colours(rng)
    image = Image.new("RGB", (image_size, image_size), bg)
    draw = ImageDraw.Draw(image)
    if name in ("stripes_h", "stripes_v", "checker", "dots"):
        _draw_texture(draw, name, image_size, rng, fg)
    else:
        r = image_size * rng.uniform(0.2, 0.38)
        cx = rng.uniform(r, image_size - r)
        cy = rng.uniform(r, image_size - r)
        _draw_shape(draw, name, (cx, cy, r, rng.uniform(0, 2 * math.pi)), fg, bg)
    # Mild blur and pixel noise, so the images look photographed rather than drawn.
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))
    noise = Image.frombytes("L", (image_size, image_size), rng.randbytes(image_size * image_size)).convert("RGB")
    return Image.blend(image, noise, rng.uniform(0.04, 0.12))


def _marker_name(train_per_class, val_per_class, image_size, seed) -> str:
    return f".complete-{train_per_class}-{val_per_class}-{image_size}-{seed}"


def _generate(root: Path, counts, image_size: int, seed: int, progress: bool) -> None:
    from tqdm import tqdm

    total = sum(counts.values()) * len(BUILTIN_CLASSES)
    with tqdm(total=total, desc="Generating built-in dataset", disable=not progress, leave=False) as bar:
        for split, count in counts.items():
            for index, name in enumerate(BUILTIN_CLASSES):
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                # One generator per (split, class): each file is reproducible on its own.
                rng = random.Random(f"{seed}-{split}-{name}")
                for i in range(count):
                    with atomic_write(folder / f"{i:05d}.jpg") as f:
                        render_sample(index, rng, image_size).save(f, format="JPEG", quality=90)
                    bar.update(1)


@contextlib.contextmanager
def _holding(root: Path):
    """An exclusive lock on the dataset folder: distributed ranks and concurrent runs that find no
    dataset wait while one of them generates it (the kernel releases the lock if that process dies)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _clear(root: Path) -> None:
    """Remove what an interrupted generation, or one with other parameters, left (not the lock)."""
    for entry in root.iterdir():
        if entry.name != ".lock":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _where(root: Path, given: bool) -> str:
    if given:
        return str(root)
    source = "ECA_DATA_CACHE" if os.environ.get("ECA_DATA_CACHE") else (
        "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "the home folder's .cache")
    return f"{root} (from {source})"


def ensure_builtin_dataset(root: Optional[os.PathLike] = None, train_per_class: int = 300, val_per_class: int = 50,
                           image_size: int = 64, seed: int = 0, progress: bool = True) -> Path:
    """Return the dataset root, generating it first if it is absent. The completion marker is written
    last, so an interrupted generation never leaves a dataset that looks complete (and removes what it
    wrote); concurrent processes wait for the one that generates. A cache location that cannot be used (a
    file, a read-only or missing parent) is a UserError naming it and the variable that chose it."""
    path = Path(root) if root is not None else default_cache_dir()
    if path.exists() and not path.is_dir():
        raise UserError(f"cannot create the built-in demo dataset in {_where(path, root is not None)}: it is a file, "
                        "not a folder; set ECA_DATA_CACHE to a writable folder, or give a dataset folder (DIR)")
    try:
        return _ensure(path, train_per_class, val_per_class, image_size, seed, progress)
    except (OSError, OutputWriteError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(" (")[-1].rstrip(")")
        raise UserError(f"cannot create the built-in demo dataset in {_where(path, root is not None)}: {reason}; "
                        "set ECA_DATA_CACHE to a writable folder, or give a dataset folder (DIR)") from None


def _ensure(root: Path, train_per_class: int, val_per_class: int, image_size: int, seed: int, progress: bool) -> Path:
    marker = root / _marker_name(train_per_class, val_per_class, image_size, seed)
    if marker.exists():
        return root
    created = not root.exists()
    with _holding(root):
        if marker.exists():  # another process generated it while this one waited
            return root
        _clear(root)
        print(f"=> generating the built-in demo dataset in {root} (once)", file=sys.stderr)
        try:
            _generate(root, {"train": train_per_class, "val": val_per_class}, image_size, seed, progress)
            with atomic_write(marker) as f:
                f.write(b"complete\n")
        except BaseException:
            shutil.rmtree(root) if created else _clear(root)
            raise
    return root
