"""Which part of the training path decides the final accuracy? Trains ECA-ResNet-18 in one process with one
piece swapped at a time between this project's path and the official code's, for several seeds, and prints
the validation top-1 per epoch and its mean ± sd. The setting is official_parity.py's (built-in demo set,
56 px crops, k_size 3333, 1000-way head, SGD lr 0.1 / 10 every 4 epochs, momentum 0.9, wd 1e-4, batch 64,
2 workers, fp32, 6 epochs).

    python scripts/benchmarks/parity_ablations.py --variant ours --seeds 1-6
    python scripts/benchmarks/parity_ablations.py --variant official-loop+our-loader --seeds 1-6

Variants (VARIANTS below): `ours` is what main.py does (its loop fed by its input pipeline, the model built
after torch.manual_seed(seed), as the official code builds it); `official` is the official main.py's loop (lr set per epoch, SGD over
model.parameters()) fed by `DataLoader(ImageFolder, shuffle=True)`, after torch.manual_seed(seed); the
others swap one piece. Every variant is validated the same way (the official center crop, all 500 images).
Results accumulate in --results (JSON), so runs already there are not repeated. A number, not a test.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate
from torchvision import datasets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models import create_model  # noqa: E402
from utils.config.sections import AugmentSettings, DataSettings, NumericsSettings, OptimSettings  # noqa: E402
from utils.config.sections import LoopSettings, ScheduleSettings  # noqa: E402
from utils.data import PipelineRun, build_pipeline  # noqa: E402
from utils.data.common import DeviceBatch, SeededSamples  # noqa: E402
from utils.data.pil import eval_transform, train_transform  # noqa: E402
from utils.training.engine import EpochPlan, train_one_epoch  # noqa: E402
from utils.training.numerics import Numerics  # noqa: E402
from utils.training.schedule import LrSchedule, build_scheduler  # noqa: E402
from utils.training.state import TrainState, build_optimizer  # noqa: E402
from utils.training.trainer import seed_everything, seed_initial_weights  # noqa: E402

EPOCHS, BATCH, LR, LR_STEP, CROP, RESIZE, WORKERS = 6, 64, 0.1, 4, 56, 64, 2

# name -> (loop, loader, swaps of the project's loader or loop)
VARIANTS = {
    "ours": ("ours", "ours", ()),
    "official": ("official", "official", ()),
    "official-loop+our-loader": ("official", "ours", ()),
    "our-loop+official-loader": ("ours", "official", ()),
    "ours/random-sampler": ("ours", "ours", ("random_sampler",)),        # RandomSampler, global generator
    "ours/worker-augmentation": ("ours", "ours", ("worker_augmentation",)),  # no per-sample seeds
    "ours/default-collate": ("ours", "ours", ("default_collate",)),
    "ours/keep-last": ("ours", "ours", ("keep_last",)),                  # drop_last=False, as the official
    "ours/no-stage": ("ours", "ours", ("no_stage",)),                    # host batches used as they are
    "ours/plain-param-groups": ("ours", "ours", ("plain_groups",)),      # SGD(model.parameters())
    "ours/epoch-lr": ("ours", "ours", ("epoch_lr",)),                    # lr set per epoch, no LambdaLR
    "ours/hashed-init-seed": ("ours", "ours", ("hashed_init",)),         # the model built after the epoch-0
}                                                                        # reseed (before the fix), not manual_seed(seed)


def validation(root: str) -> DataLoader:
    ds = datasets.ImageFolder(os.path.join(root, "val"), eval_transform(CROP, RESIZE))
    return DataLoader(ds, batch_size=BATCH, shuffle=False, num_workers=WORKERS)


@torch.no_grad()
def top1(model, loader) -> float:
    model.eval()
    correct = count = 0
    for images, targets in loader:
        correct += (model(images).argmax(1) == targets).sum().item()
        count += len(targets)
    return 100.0 * correct / count


def official_batches(root: str, keep_last: bool = True):
    """The official training loader: ImageFolder + DataLoader(shuffle=True); its order and its workers'
    augmentation streams come from torch's global generator."""
    ds = datasets.ImageFolder(os.path.join(root, "train"), train_transform(CROP))
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=WORKERS, drop_last=not keep_last)
    return lambda epoch: contextlib.nullcontext(iter(loader)), len(loader)


def our_batches(root: str, seed: int, swaps):
    """The project's pipeline (what main.py builds), with `swaps` applied to its loader."""
    settings = DataSettings(data=root, data_backend="pil", batch_size=BATCH, per_process_batch=BATCH, workers=WORKERS,
                            crop_size=CROP, val_resize=RESIZE, crop_scale=0.08, skip_corrupt=True)
    pipeline = build_pipeline(settings, AugmentSettings(), PipelineRun(seed=seed, device=torch.device("cpu"),
                                                                       num_classes=1000), need_train=True)
    loader_swaps = {"random_sampler", "worker_augmentation", "default_collate", "keep_last", "no_stage"}
    if not loader_swaps & set(swaps):
        return (lambda epoch: _pairs(pipeline.train_epoch(epoch))), pipeline.steps_per_epoch
    samples = pipeline._samples if "worker_augmentation" not in swaps else SeededSamples(pipeline.train_set, None)
    sampler = RandomSampler(pipeline.train_set) if "random_sampler" in swaps else pipeline._sampler
    collate = (lambda items: default_collate([item[:2] for item in items])) if "default_collate" in swaps \
        else type(pipeline).collate
    loader = DataLoader(samples, batch_size=BATCH, sampler=sampler, num_workers=WORKERS,
                        drop_last="keep_last" not in swaps, collate_fn=collate)

    @contextlib.contextmanager
    def epoch_batches(epoch):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        samples.set_epoch(epoch)
        yield _host_pairs(loader, pipeline.stage if "no_stage" not in swaps else None)
    return epoch_batches, len(loader)


@contextlib.contextmanager
def _pairs(device_batches):
    with device_batches as batches:
        yield ((b.images, b.targets) for b in batches)


def _host_pairs(loader, stage):
    for batch in loader:
        if isinstance(batch, (list, tuple)) and not hasattr(batch, "images"):
            yield batch[0], batch[1]
        elif stage is None:
            yield batch.images, batch.targets
        else:
            device = stage(batch)
            yield device.images, device.targets


def official_loop(model, epoch_batches, seed, val, epochs):
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=0.9, weight_decay=1e-4)
    criterion, curve = torch.nn.CrossEntropyLoss(), []
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = LR * (0.1 ** (epoch // LR_STEP))
        model.train()
        with epoch_batches(epoch) as batches:
            for images, targets in batches:
                loss = criterion(model(images), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        curve.append(top1(model, val))
    return curve


class _Fixed:
    """A scheduler that leaves the lr as the loop set it (the `epoch_lr` swap)."""

    def step(self):
        pass


def our_loop(model, epoch_batches, steps, seed, val, epochs, swaps):
    optimizer = build_optimizer(model, OptimSettings(lr=LR, momentum=0.9, weight_decay=1e-4))
    if "plain_groups" in swaps:
        optimizer = torch.optim.SGD(model.parameters(), LR, momentum=0.9, weight_decay=1e-4)
    schedule = LrSchedule(ScheduleSettings(lr_schedule="step", lr_step=LR_STEP, lr_gamma=0.1), LR, epochs)
    numerics = Numerics(NumericsSettings(device="cpu", amp="none", channels_last=False, compile=False))
    state = TrainState(model, model, model, optimizer, build_scheduler(optimizer, schedule, steps),
                       numerics.grad_scaler(), numerics, torch.nn.CrossEntropyLoss())
    loop, curve = LoopSettings(epochs=epochs, print_freq=10, progress=False), []
    for epoch in range(epochs):
        seed_everything(seed, epoch)
        if "epoch_lr" in swaps:
            for group in optimizer.param_groups:
                group["lr"] = LR * (0.1 ** (epoch // LR_STEP))
            state.scheduler = _Fixed()
        with epoch_batches(epoch) as batches:
            device_batches = (DeviceBatch(images, targets, [], 0) for images, targets in batches)
            train_one_epoch(state, device_batches, loop, EpochPlan(epoch, 0, steps))
        curve.append(top1(model, val))
    return curve


def run_variant(name: str, root: str, seed: int, epochs: int) -> list:
    """The validation top-1 after each epoch of variant `name`."""
    return train_variant(name, root, seed, epochs)[1]


def train_variant(name: str, root: str, seed: int, epochs: int):
    """(the trained model, its validation top-1 after each epoch)."""
    loop, loader, swaps = VARIANTS[name]
    if "hashed_init" in swaps:
        seed_everything(seed, 0)  # what main.py did before it seeded as the official code does
    else:
        seed_initial_weights(seed)  # main.py and the official main.py: torch.manual_seed(seed), then build
    model = create_model("eca_resnet18", k_size="3333", num_classes=1000)
    if loader == "official":
        epoch_batches, steps = official_batches(root)
    else:
        epoch_batches, steps = our_batches(root, seed, swaps)
    val = validation(root)
    if loop == "official":
        return model, official_loop(model, epoch_batches, seed, val, epochs)
    return model, our_loop(model, epoch_batches, steps, seed, val, epochs, swaps)


def seed_list(text: str) -> list:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def spread(values) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} ± {sd:4.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    p.add_argument("--seeds", default="1-6", help="'1-6' or '1,3,5'")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--data", default=None, help="ImageFolder root (default: the built-in demo dataset)")
    p.add_argument("--results", default="parity_ablations.json", help="JSON file the runs accumulate in")
    args = p.parse_args(argv)
    if args.data is None:
        from utils.data.builtin_dataset import ensure_builtin_dataset

        args.data = str(ensure_builtin_dataset())
    results = json.load(open(args.results)) if os.path.exists(args.results) else {}
    runs = results.setdefault(args.variant, {})
    for seed in seed_list(args.seeds):
        if str(seed) in runs:
            continue
        start = time.perf_counter()
        runs[str(seed)] = run_variant(args.variant, args.data, seed, args.epochs)
        with open(args.results, "w") as f:
            json.dump(results, f, indent=1)
        print(f"seed {seed}: " + " ".join(f"{v:5.1f}" for v in runs[str(seed)])
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    finals = [curve[-1] for curve in runs.values()]
    print(f"{args.variant}: final val top-1 {spread(finals)}, n={len(finals)}")
    for epoch in range(args.epochs):
        print(f"  epoch {epoch + 1}: {spread([c[epoch] for c in runs.values() if len(c) > epoch])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
