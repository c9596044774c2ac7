"""Training and inference throughput of chosen architectures and settings, in one process.

    python scripts/benchmark.py --archs eca_resnet50,resnet50 --settings official,fast,compiled
    python scripts/benchmark.py --data /data/ILSVRC2012 --loader-batches 50     # input pipeline too

Synthetic batches already on the device; warm-up steps excluded; each figure is the median over
--repeats timed windows of --steps steps (device synchronised at both ends of a window). Prints a table
like the paper's Table 3 and the ratios that matter (each setting vs the official recipe, each ECA model
vs the same backbone without attention), and writes everything as JSON. Runs on the CPU too, at small
sizes, so CI can smoke-test it; absolute numbers hold only for the hardware they were measured on.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import create_model, list_models  # noqa: E402
from models.attention import set_eca_implementation  # noqa: E402
from utils.engine import Numerics  # noqa: E402
from utils.flops import count_params_macs, format_1024  # noqa: E402

# name -> (autocast dtype, channels_last, torch.compile, ECA as shifted sums)
SETTINGS = {
    "official": (None, False, False, False),          # fp32 (TF32 on GPUs), NCHW, eager: the official recipe
    "fast": (torch.bfloat16, True, False, False),      # bf16 autocast + channels_last, eager
    "compiled": (torch.bfloat16, True, True, False),   # the same under torch.compile (the CUDA default)
    "compiled_shifted": (torch.bfloat16, True, True, True),  # and the fusion-friendly ECA form (--eca-impl shifted)
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step, batch: int, device, steps: int, warmup: int, repeats: int) -> float:
    """Median images/s over `repeats` windows of `steps` calls of step(), after `warmup` calls."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(arch: str, setting: str, args, device: torch.device) -> dict:
    dtype, channels_last, compiled, shifted = SETTINGS[setting]
    numerics = Numerics(device, dtype, channels_last)
    torch.manual_seed(0)
    model = set_eca_implementation(create_model(arch, num_classes=1000), shifted).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    target = torch.randint(0, 1000, (args.batch_size,))
    images, target = numerics.to_device(images, target)

    def train_step():
        with numerics.autocast():
            loss = criterion(runner(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def eval_step():
        with numerics.autocast():
            runner(images)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train = timed_rate(train_step, args.batch_size, device, args.steps, args.warmup, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    model.eval()
    evaluation = timed_rate(eval_step, args.batch_size, device, args.steps, args.warmup, args.repeats)
    return {"arch": arch, "setting": setting, "train_img_s": train, "eval_img_s": evaluation, "peak_mem_gib": peak}


def loader_rate(data: str, backend: str, args) -> dict:
    """Images/s of the training input pipeline alone (decode, crop, flip, collate; the tensor backend's
    normalisation happens later, on the device)."""
    from utils.data import LoaderSamples, build_datasets, collate_samples

    options = argparse.Namespace(data=data, dummy=False, crop_size=args.image_size, crop_scale=0.08,
                                 val_resize=max(args.image_size, int(args.image_size / 0.875)))
    train, _ = build_datasets(options, need_train=True, backend=backend)
    loader = torch.utils.data.DataLoader(LoaderSamples(train, seed=0), batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=args.workers, collate_fn=collate_samples)
    batches = iter(loader)
    next(batches)  # workers started and warm
    start, seen = time.perf_counter(), 0
    for _ in range(args.loader_batches):
        images, _, _, _ = next(batches)
        seen += images.shape[0]
    return {"backend": backend, "workers": args.workers, "img_s": seen / (time.perf_counter() - start)}


def baseline_of(arch: str):
    for prefix in ("eca_ns_", "eca_"):
        if arch.startswith(prefix):
            return arch[len(prefix):]
    return None


def ratios(results):
    by_key = {(r["arch"], r["setting"]): r for r in results}
    out = []
    for r in results:
        official = by_key.get((r["arch"], "official"))
        if official and r["setting"] != "official":
            out.append({"what": f"{r['arch']} {r['setting']} / official", "train": r["train_img_s"] /
                        official["train_img_s"], "eval": r["eval_img_s"] / official["eval_img_s"]})
        base = by_key.get((baseline_of(r["arch"]), r["setting"]))
        if base:
            out.append({"what": f"{r['arch']} / {base['arch']} ({r['setting']})", "train": r["train_img_s"] /
                        base["train_img_s"], "eval": r["eval_img_s"] / base["eval_img_s"]})
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="eca_resnet50,resnet50", help="comma-separated registered models")
    p.add_argument("--settings", default="official,fast,compiled", help=f"comma-separated: {', '.join(SETTINGS)}")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20, help="steps per timed window")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation, cuDNN autotuning)")
    p.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported")
    p.add_argument("--cpu", action="store_true", help="measure on the CPU even if a GPU is present")
    p.add_argument("--data", default=None, help="ImageFolder root: also time the input pipeline on DIR/train")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--loader-batches", type=int, default=20)
    p.add_argument("--json", default="benchmark.json", help="where to write all numbers")
    p.add_argument("--no-flops", action="store_true", help="skip the thop Param/FLOPs columns")
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.settings = [s for s in args.settings.split(",") if s]
    unknown = [a for a in args.archs if a not in list_models()] + [s for s in args.settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown arch or setting: {', '.join(unknown)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "batch_size": args.batch_size, "image_size": args.image_size}
    results = [measure(arch, setting, args, device) for arch in args.archs for setting in args.settings]
    counts = {} if args.no_flops else {a: count_params_macs(a, input_size=args.image_size) for a in args.archs}
    print(f"# {env['device']}, torch {env['torch']}, batch {args.batch_size}, {args.image_size} px")
    print("| arch | setting | Param | FLOPs | train img/s | eval img/s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        c = counts.get(r["arch"])
        peak = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(f"| {r['arch']} | {r['setting']} | {format_1024(c['params']) if c else '-'} | "
              f"{format_1024(c['macs']) if c else '-'} | {r['train_img_s']:.1f} | {r['eval_img_s']:.1f} | {peak} |")
    rows = ratios(results)
    if rows:
        print("\n| ratio | train | eval |\n|---|---|---|")
        for row in rows:
            print(f"| {row['what']} | {row['train']:.3f} | {row['eval']:.3f} |")
    pipeline = [loader_rate(args.data, backend, args) for backend in ("pil", "tensor")] if args.data else []
    for p in pipeline:
        print(f"input pipeline ({p['backend']}, {p['workers']} workers): {p['img_s']:.1f} img/s")
    with open(args.json, "w") as f:
        json.dump({"env": env, "results": results, "ratios": rows, "counts": counts, "pipeline": pipeline}, f,
                  indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
