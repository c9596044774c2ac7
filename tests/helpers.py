"""Small data and command helpers shared by the tests."""
import os
import subprocess
import sys
from typing import Sequence

import numpy as np
import torch
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
    full_env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))  # this test process's share of the cores
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


# Configuration sections and pipelines for in-process tests: keyword arguments over small defaults.

def data_settings(root, backend="pil", crop=32, resize=36, batch=4, **kw):
    from utils.config.sections import DataSettings

    values = dict(data=None if root is None else str(root), data_backend=backend, crop_size=crop, val_resize=resize,
                  batch_size=batch, per_process_batch=batch, workers=0)
    values.update(kw)
    return DataSettings(**values)


def build_test_pipeline(root, backend="pil", need_train=True, seed=0, num_classes=3, rank=0, world_size=1,
                        augment=None, **kw):
    """An input pipeline over `root` on the CPU (see data_settings for the keywords)."""
    import torch

    from utils.config.sections import AugmentSettings
    from utils.data import PipelineRun, build_pipeline

    run = PipelineRun(seed=seed, device=torch.device("cpu"), num_classes=num_classes, rank=rank, world_size=world_size)
    return build_pipeline(data_settings(root, backend, **kw), augment or AugmentSettings(), run, need_train)


def cpu_numerics(**kw):
    from utils.config.sections import NumericsSettings

    return NumericsSettings(**{"device": "cpu", "amp": "none", "channels_last": False, "compile": False,
                               "eca_impl": "conv", **kw})


def loop_settings(**kw):
    from utils.config.sections import LoopSettings

    return LoopSettings(**{"epochs": 1, "print_freq": 1, "progress": False, **kw})


def lr_schedule(kind="step", lr=0.01, epochs=1, **kw):
    from utils.config.sections import ScheduleSettings
    from utils.training.schedule import LrSchedule

    defaults = {"lr_step": 30, "lr_gamma": 0.1}
    return LrSchedule(ScheduleSettings(**{"lr_schedule": kind, **defaults, **kw}), lr, epochs)


def parsed_flags(recipe, argv):
    """The values the entry points' parser gives for `argv` under `recipe` (parsing only, no checks)."""
    from types import SimpleNamespace

    from utils.config.parser import build_parser, declared_defaults, parse_options
    from utils.config.sections import SECTIONS

    defaults = {**declared_defaults(SECTIONS.values()), **recipe}
    values, _ = parse_options(build_parser(SECTIONS.values(), defaults, ""), argv, defaults)
    return SimpleNamespace(**values)


def meta_params_macs(arch, k_size=None, input_size=224, num_classes=1000):
    """What utils.analysis.flops.count_params_macs returns, from thop on the meta device: the same hooks count
    from the shapes alone, without allocating or initialising the model (tests/analysis/test_flops.py checks
    the two agree), so counts at 224 px of every model cost milliseconds."""
    import contextlib
    import io
    import warnings

    import torch
    from thop import profile

    from models import create_model

    with torch.device("meta"), uninitialised():
        model = create_model(arch, k_size=k_size, num_classes=num_classes).eval()
        image = torch.empty(1, 3, input_size, input_size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        macs, _ = profile(model, inputs=(image,), verbose=False)
    return {"params": int(sum(p.numel() for p in model.parameters())), "macs": int(macs)}


def uninitialised():
    """torch.nn.init's functions as no-ops (for models built on the meta device, whose tensors hold no values:
    their initialisation only costs Python time)."""
    import contextlib
    from unittest import mock

    import torch

    names = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    stack = contextlib.ExitStack()
    for name in names:
        stack.enter_context(mock.patch.object(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor))
    return stack
