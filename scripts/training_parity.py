"""Does the project's training loader learn as fast as torch's plain one? Trains the same model from the same
initial weights with (a) a reference loader built only from torchvision and torch (ImageFolder,
DataLoader(shuffle=True), the official RandomResizedCrop + flip transforms) and (b) the project's loader
(utils/data: DistributedSampler-based shards, per-sample seeded augmentation, collate, device stage), for
--seeds seeds and --epochs epochs, and prints per-epoch train loss and top-1 of each, with mean and spread.

    python scripts/training_parity.py --seeds 8 --epochs 4            # the built-in demo dataset

Defaults follow the comparison in which the official code was run on the demo set: ECA-ResNet-18 with
kernel sizes 3333 and a 1000-way head, 56 px crops (scale 0.08-1), SGD lr 0.1 (constant), momentum 0.9,
wd 1e-4, batch 64, fp32. A number, not a test: early training of this set varies a lot from seed to seed
(so does the official code's), so compare the spreads, and use enough seeds.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import create_model  # noqa: E402
from utils.data import DataSettings, build_data  # noqa: E402
from utils.data.pil import train_transform  # noqa: E402
from utils.distributed import DistContext  # noqa: E402


def reference_batches(args, seed: int):
    """torchvision and torch only, as the official main.py builds its training loader."""
    from torchvision import datasets

    dataset = datasets.ImageFolder(os.path.join(args.data, "train"), train_transform(args.crop_size, args.crop_scale))
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, generator=generator)
    while True:
        yield from loader
        yield None  # end of an epoch


def project_batches(args, seed: int):
    settings = DataSettings(data=args.data, data_backend="pil", train_crop_size=args.crop_size, val_crop_size=args.crop_size,
                            crop_scale=args.crop_scale,
                            val_resize=args.crop_size, per_process_batch=args.batch_size, workers=args.workers,
                            seed=seed, skip_corrupt=True, num_classes=args.num_classes, channels_last=False)
    data = build_data(settings, DistContext(), need_train=True)
    epoch = 0
    while True:
        data.train_loader.sampler.set_epoch(epoch)
        data.train_loader.dataset.set_epoch(epoch)
        for batch in data.stage.stream(data.train_loader):
            yield batch.images, batch.targets
        yield None
        epoch += 1


def train(args, batches, initial_state) -> list:
    """Per-epoch (loss, top-1) of SGD from `initial_state` over `batches`."""
    model = create_model(args.arch, k_size=args.ksize, num_classes=args.num_classes)
    model.load_state_dict(initial_state)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    history = []
    for _ in range(args.epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for item in batches:
            if item is None:
                break
            images, target = item
            output = model(images)
            loss = criterion(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(target)
            correct += (output.argmax(1) == target).sum().item()
            seen += len(target)
        history.append((loss_sum / seen, 100.0 * correct / seen))
    return history


def spread(values) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:6.2f} ± {sd:5.2f} ({min(values):.1f}-{max(values):.1f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="ImageFolder root with train/ (default: the built-in demo dataset)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--arch", default="eca_resnet18")
    p.add_argument("--ksize", default="3333")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--crop-size", type=int, default=56)
    p.add_argument("--crop-scale", type=float, default=0.08)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loaders", default="reference,project")
    args = p.parse_args(argv)
    if args.data is None:
        from utils.builtin_dataset import ensure_builtin_dataset

        args.data = str(ensure_builtin_dataset())
    makers = {"reference": reference_batches, "project": project_batches}
    loaders = args.loaders.split(",")
    results = {name: [] for name in loaders}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        torch.manual_seed(seed)
        initial = create_model(args.arch, k_size=args.ksize, num_classes=args.num_classes).state_dict()
        for name in loaders:
            start = time.perf_counter()
            history = train(args, makers[name](args, seed), initial)
            results[name].append(history)
            print(f"seed {seed} {name:9s} top-1 by epoch: " + " ".join(f"{t:5.1f}" for _, t in history)
                  + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{args.seeds} seeds; mean ± sd (min-max) per epoch")
    for epoch in range(args.epochs):
        for name in loaders:
            losses = [h[epoch][0] for h in results[name]]
            top1 = [h[epoch][1] for h in results[name]]
            print(f"epoch {epoch + 1} {name:9s} loss {spread(losses)}  top-1 {spread(top1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
