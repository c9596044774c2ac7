"""Training and inference throughput of chosen architectures and settings, in one process.

    python scripts/benchmark.py --archs eca_resnet50,resnet50 --settings official,fast,compiled
    python scripts/benchmark.py --data /data/ILSVRC2012 --loader-batches 50     # input pipelines too

Synthetic batches already on the device; warm-up steps excluded; each figure is the median over
--repeats timed windows of --steps steps (device synchronised at both ends of a window). Prints a table
like the paper's Table 3 and the ratios that matter (each setting vs the official recipe, each ECA model
vs the same backbone without attention), and writes everything as JSON. With --data, also the input
pipelines alone (files to a normalised batch on the device) and training fed from the folder through
each pipeline, as a fraction of the synthetic-data rate of the same model in the same process.
Runs on the CPU too, at small sizes, so CI can smoke-test it; absolute numbers hold only for the
hardware they were measured on.
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
from utils.config import NumericsSettings  # noqa: E402
from utils.data import BACKENDS, DataSettings, build_datasets  # noqa: E402
from utils.data.common import HostBatch, SeededSamples  # noqa: E402
from utils.flops import count_params_macs, format_1024  # noqa: E402
from utils.numerics import Numerics  # noqa: E402

# name -> (autocast dtype, channels_last, torch.compile, ECA implementation: see --eca-impl)
SETTINGS = {
    "official": ("none", False, False, "conv"),  # fp32 (TF32 on GPUs), NCHW, eager: the official recipe
    "fast": ("bf16", True, False, "conv"),        # bf16 autocast + channels_last, eager
    "compiled": ("bf16", True, True, "conv"),     # the same under torch.compile
    "compiled_shifted": ("bf16", True, True, "shifted"),  # and the ECA gate as shifted sums
    "compiled_fused": ("bf16", True, True, "fused"),      # and BN + ECA + residual fused (CUDA default)
}


def numerics_for(device: torch.device, amp: str, channels_last: bool, compiled: bool) -> NumericsSettings:
    return NumericsSettings(str(device), amp, channels_last, compiled, "inductor", False)


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
    amp, channels_last, compiled, eca_impl = SETTINGS[setting]
    settings = numerics_for(device, "none" if args.fp32 else amp, channels_last, compiled)
    numerics = Numerics(settings)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=1000, eca_impl=eca_impl).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    target = torch.randint(0, 1000, (args.batch_size,))
    stage = BACKENDS["pil"].Stage(device, channels_last)  # synthetic float images: move and lay out only
    images, target = stage(HostBatch(images, target, [], 0))[:2]

    def train_step(batch=images, labels=target):
        with numerics.autocast():
            loss = criterion(runner(batch), labels)
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
    result = {"arch": arch, "setting": setting, "train_img_s": train, "peak_mem_gib": peak}
    if args.data and setting == args.settings[-1]:
        # Same model, already compiled and warm: only the source of the batches changes.
        result["from_folder"] = {p: folder_train_rate(args, p, settings, train_step) for p in args.pipelines}
    model.eval()
    result["eval_img_s"] = timed_rate(eval_step, args.batch_size, device, args.steps, args.warmup, args.repeats)
    return result


def folder_batches(args, backend: str, numerics: NumericsSettings):
    """Endless training batches from args.data/train through one input pipeline (epochs repeat), each
    passed through the pipeline's device stage, and the stage's host batches' sizes."""
    settings = DataSettings(data=args.data, data_backend=backend, crop_size=args.image_size, crop_scale=0.08,
                            val_resize=max(args.image_size, int(args.image_size / 0.875)),
                            per_process_batch=args.batch_size, workers=args.workers, seed=0, skip_corrupt=False,
                            num_classes=1000, channels_last=numerics.channels_last)
    train, _ = build_datasets(settings, need_train=True)
    device = torch.device(numerics.device)
    loader = torch.utils.data.DataLoader(
        SeededSamples(train, seed=0), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, collate_fn=BACKENDS[backend].collate, pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    if len(loader) == 0:
        raise SystemExit(f"{args.data}/train holds fewer than --batch-size {args.batch_size} images")
    stage = BACKENDS[backend].Stage(device, numerics.channels_last)
    while True:
        for host in loader:
            if host.images is not None:
                yield stage(host)


def timed_batches(batches, consume, device, count: int, warmup: int) -> float:
    """Images/s of `consume(batch)` over `count` device batches, after `warmup` batches."""
    for _ in range(warmup):
        consume(next(batches))
    sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(count):
        seen += consume(next(batches))
    sync(device)
    return seen / (time.perf_counter() - start)


def folder_train_rate(args, backend: str, numerics: NumericsSettings, train_step) -> float:
    """Training images/s end to end, from JPEG files through `backend` to the optimizer step."""
    def consume(batch):
        train_step(batch.images, batch.targets)
        return batch.targets.shape[0]

    device = torch.device(numerics.device)
    return timed_batches(folder_batches(args, backend, numerics), consume, device, args.loader_batches, warmup=3)


def loader_rate(args, backend: str, device: torch.device) -> dict:
    """Images/s of an input pipeline alone: from files to a normalised float batch on the device
    (decode, crop, flip, copy; the gpu pipeline decodes on the device)."""
    numerics = numerics_for(device, "none", False, False)
    rate = timed_batches(folder_batches(args, backend, numerics), lambda batch: batch.targets.shape[0], device,
                         args.loader_batches, warmup=2)
    return {"backend": backend, "workers": args.workers, "img_s": rate}


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
    p.add_argument("--fp32", action="store_true",
                   help="run every setting without autocast (CPUs without native bf16 emulate it slowly)")
    p.add_argument("--data", default=None, help="ImageFolder root: also time the input pipelines on DIR/train, "
                   "alone and feeding training (each arch, last setting)")
    p.add_argument("--pipelines", default="pil,tensor,gpu", help="comma-separated --data-backend values to time")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--loader-batches", type=int, default=20, help="timed batches per pipeline measurement")
    p.add_argument("--json", default="benchmark.json", help="where to write all numbers")
    p.add_argument("--no-flops", action="store_true", help="skip the thop Param/FLOPs columns")
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.settings = [s for s in args.settings.split(",") if s]
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    unknown = [a for a in args.archs if a not in list_models()] + [s for s in args.settings if s not in SETTINGS]
    unknown += [p for p in args.pipelines if p not in ("pil", "tensor", "gpu")]
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
           "torch": torch.__version__, "batch_size": args.batch_size, "image_size": args.image_size,
           "fp32": args.fp32}
    results = [measure(arch, setting, args, device) for arch in args.archs for setting in args.settings]
    counts = {} if args.no_flops else {a: count_params_macs(a, input_size=args.image_size) for a in args.archs}
    print(f"# {env['device']}, torch {env['torch']}, batch {args.batch_size}, {args.image_size} px"
          + (", every setting in fp32" if args.fp32 else ""))
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
    pipeline = [loader_rate(args, backend, device) for backend in args.pipelines] if args.data else []
    for p in pipeline:
        print(f"input pipeline alone ({p['backend']}, {p['workers']} workers): {p['img_s']:.1f} img/s")
    for r in results:
        for backend, rate in r.get("from_folder", {}).items():
            print(f"{r['arch']} {r['setting']} training from {args.data} ({backend}): {rate:.1f} img/s, "
                  f"{rate / r['train_img_s']:.3f} of synthetic")
    with open(args.json, "w") as f:
        json.dump({"env": env, "results": results, "ratios": rows, "counts": counts, "pipeline": pipeline}, f,
                  indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
