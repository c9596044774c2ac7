"""Training and inference throughput of chosen architectures and settings, in one process.

    python scripts/benchmarks/benchmark.py --archs eca_resnet50,resnet50 --settings official,fast,compiled
    python scripts/benchmarks/benchmark.py --data /data/ILSVRC2012 --loader-batches 50     # input pipelines too

Synthetic batches already on the device; warm-up steps excluded; each figure is the median over
--repeats timed windows of --steps steps (device synchronised at both ends of a window). Prints a table
like the paper's Table 3 and the ratios that matter (each setting vs the official recipe, each ECA model
vs the same backbone without attention). With --data, also the input pipelines alone (files to a
normalised batch on the device), the loader workers' hand-over of batches to the main process alone
(collate and transfer of samples prepared beforehand, batches per second, on the CPU), and training fed
from the folder through each pipeline, as a fraction of the synthetic-data rate of the same model in the
same process (--data-measures chooses among the three).
The JSON file is rewritten (atomically) after every measurement, so a run stopped by a time limit keeps
every number it had. --archs "" measures the input pipelines only.
Runs on the CPU too, at small sizes, so CI can smoke-test it; absolute numbers hold only for the
hardware they were measured on.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from models import create_model, list_models  # noqa: E402
from utils.config.sections import AugmentSettings, DataSettings, NumericsSettings  # noqa: E402
from utils.data import PIPELINES, PipelineRun, make_stage  # noqa: E402
from utils.data.common import HostBatch, SeededSamples  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.running.files import write_json  # noqa: E402
from utils.analysis.flops import count_params_macs, format_1024  # noqa: E402
from utils.training.numerics import Numerics  # noqa: E402

# name -> (autocast dtype, channels_last, torch.compile, ECA implementation: see --eca-impl)
SETTINGS = {
    "official": ("none", False, False, "conv"),  # fp32 (TF32 on GPUs), NCHW, eager: the official recipe
    "fast": ("bf16", True, False, "conv"),        # bf16 autocast + channels_last, eager
    "compiled": ("bf16", True, True, "conv"),     # the same under torch.compile
    "compiled_shifted": ("bf16", True, True, "shifted"),  # and the ECA gate as shifted sums
    "compiled_fused": ("bf16", True, True, "fused"),      # and BN + ECA + residual fused (CUDA default)
}


def numerics_for(device: torch.device, amp: str, channels_last: bool, compiled: bool) -> NumericsSettings:
    return NumericsSettings(device=str(device), amp=amp, channels_last=channels_last, compile=compiled)


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


class Report:
    """Everything measured so far, rewritten to --json after each measurement (atomically: a run killed
    mid-write leaves the previous file), so a time limit costs only the measurement it interrupted."""

    def __init__(self, path: str, env: dict):
        self.path = path
        self.payload = {"env": env, "results": [], "ratios": [], "counts": {}, "pipeline": [], "transfer": []}

    def add(self, section: str, entry: dict) -> dict:
        """Append `entry` (which may be filled in further, then saved again) and save."""
        self.payload[section].append(entry)
        self.save()
        return entry

    def set(self, section: str, value) -> None:
        self.payload[section] = value
        self.save()

    def save(self) -> None:
        write_json(self.path, self.payload)


def measure(arch: str, setting: str, args, device: torch.device, report: Report) -> dict:
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
    stage = PIPELINES["pil"].Stage(device, channels_last)  # synthetic float images: move and lay out only
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
    result = report.add("results", {"arch": arch, "setting": setting, "train_img_s": train, "eval_img_s": None,
                                    "peak_mem_gib": peak})
    print(f"{arch} {setting}: train {train:.1f} img/s", flush=True)
    if args.data and "train" in args.data_measures and setting == args.settings[-1] and arch in args.folder_archs:
        # Same model, already compiled and warm: only the source of the batches changes.
        result["from_folder"] = {}
        for backend in args.pipelines:
            result["from_folder"][backend] = rate = folder_train_rate(args, backend, settings, train_step)
            report.save()
            print(f"{arch} {setting} training from {args.data} ({backend}): {rate:.1f} img/s, "
                  f"{rate / train:.3f} of synthetic", flush=True)
    model.eval()
    result["eval_img_s"] = timed_rate(eval_step, args.batch_size, device, args.steps, args.warmup, args.repeats)
    report.save()
    print(f"{arch} {setting}: eval {result['eval_img_s']:.1f} img/s", flush=True)
    return result


def training_images(args, backend: str):
    """args.data/train through `backend`'s training transforms (the official crop scale, --image-size)."""
    settings = DataSettings(data=args.data, data_backend=backend, crop_size=args.image_size,
                            val_resize=max(args.image_size, int(args.image_size / 0.875)), batch_size=args.batch_size,
                            per_process_batch=args.batch_size, workers=args.workers)
    pipeline = PIPELINES[backend](settings, AugmentSettings(), PipelineRun(seed=0, device=torch.device("cpu")),
                                  need_train=True)
    return pipeline.train_set


def folder_loader(args, backend: str, pin_memory: bool) -> torch.utils.data.DataLoader:
    """Training batches from args.data/train through one input pipeline's workers and collate, as the
    training loader makes them (shuffled, seeded augmentation); persistent workers, so the epochs that
    a measurement runs through do not restart them."""
    train = training_images(args, backend)
    loader = torch.utils.data.DataLoader(
        SeededSamples(train, seed=0), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, collate_fn=PIPELINES[backend].collate, pin_memory=pin_memory,
        persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    if len(loader) == 0:
        raise SystemExit(f"{args.data}/train holds fewer than --batch-size {args.batch_size} images")
    return loader


def endless(loader):
    while True:
        yield from loader


def folder_batches(args, backend: str, numerics: NumericsSettings):
    """Endless training batches from args.data/train through one input pipeline (epochs repeat), each
    passed through the pipeline's device stage."""
    device = torch.device(numerics.device)
    loader = folder_loader(args, backend, pin_memory=device.type == "cuda")
    for batch in make_stage(backend, device, numerics.channels_last).stream(endless(loader)):
        if batch.images is not None:
            yield batch


def timed_batches(batches, consume, device, count: int, warmup: int) -> float:
    """Images/s of `consume(batch)` over `count` batches, after `warmup` batches."""
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


class RepeatedSamples(torch.utils.data.Dataset):
    """`samples` over and over: loader workers that only look samples up, so that what a loader's
    throughput measures is its collate and the hand-over of each batch to the main process."""

    def __init__(self, samples: list, length: int):
        self.samples, self.length = samples, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.samples[index % len(self.samples)]


def transfer_rate(args, backend: str) -> dict:
    """Batches/s that loader workers hand to the main process through one pipeline's collate, on the CPU,
    with nothing done with them: each worker collates a batch of samples prepared beforehand (one batch's
    worth, read and decoded once) and sends it through shared memory, one handle per tensor. No pinning,
    no device. Measures the cost that grows with the number of tensors per batch."""
    train = training_images(args, backend)
    seeded = SeededSamples(train, seed=0)
    samples = [s for s in (seeded[i % len(seeded)] for i in range(args.batch_size)) if s is not None]
    if not samples:
        raise SystemExit(f"no readable image among the first {args.batch_size} of {args.data}/train")
    count, warmup = max(1, args.loader_batches), max(2, args.workers)  # one batch per worker: their start-up
    loader = torch.utils.data.DataLoader(
        RepeatedSamples(samples, (count + warmup) * args.batch_size), batch_size=args.batch_size,
        num_workers=args.workers, collate_fn=PIPELINES[backend].collate,
        prefetch_factor=4 if args.workers else None)
    rate = timed_batches(iter(loader), lambda host: len(host.indices), torch.device("cpu"), count, warmup)
    return {"backend": backend, "workers": args.workers, "batch_size": args.batch_size, "img_s": rate,
            "batches_s": rate / args.batch_size}


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
    p.add_argument("--data-measures", default="train,alone,transfer",
                   help="with --data, comma-separated: train (training fed from the folder, last setting), alone "
                        "(each pipeline to the device, no model), transfer (worker->main hand-over, CPU)")
    p.add_argument("--folder-archs", default=None,
                   help="comma-separated archs to train from the folder (default: every --archs)")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--loader-batches", type=int, default=20, help="timed batches per pipeline measurement")
    p.add_argument("--json", default="benchmark.json", help="where to write all numbers")
    p.add_argument("--no-flops", action="store_true", help="skip the thop Param/FLOPs columns")
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.settings = [s for s in args.settings.split(",") if s]
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    args.data_measures = [m for m in args.data_measures.split(",") if m]
    args.folder_archs = args.archs if args.folder_archs is None else [a for a in args.folder_archs.split(",") if a]
    unknown = [a for a in args.archs if a not in list_models()] + [s for s in args.settings if s not in SETTINGS]
    unknown += [p for p in args.pipelines if p not in ("pil", "tensor", "gpu")]
    unknown += [m for m in args.data_measures if m not in ("train", "alone", "transfer")]
    unknown += [a for a in args.folder_archs if a not in args.archs]
    if unknown:
        p.error(f"unknown arch, setting, pipeline or measure: {', '.join(unknown)}")
    return args


def param_counts(args) -> dict:
    if args.no_flops or not args.archs:
        return {}
    try:
        return {a: count_params_macs(a, input_size=args.image_size) for a in args.archs}
    except (ImportError, UserError) as exc:  # thop is missing: the throughput numbers stand without it
        print(f"no Param/FLOPs columns ({exc}; or pass --no-flops)")
        return {}


def print_tables(args, env: dict, results: list, counts: dict, rows: list) -> None:
    print(f"# {env['device']}, torch {env['torch']}, batch {args.batch_size}, {args.image_size} px"
          + (", every setting in fp32" if args.fp32 else ""))
    print("| arch | setting | Param | FLOPs | train img/s | eval img/s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        c = counts.get(r["arch"])
        peak = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(f"| {r['arch']} | {r['setting']} | {format_1024(c['params']) if c else '-'} | "
              f"{format_1024(c['macs']) if c else '-'} | {r['train_img_s']:.1f} | {r['eval_img_s']:.1f} | {peak} |")
    if rows:
        print("\n| ratio | train | eval |\n|---|---|---|")
        for row in rows:
            print(f"| {row['what']} | {row['train']:.3f} | {row['eval']:.3f} |")
    for r in results:
        for backend, rate in r.get("from_folder", {}).items():
            print(f"{r['arch']} {r['setting']} training from {args.data} ({backend}): {rate:.1f} img/s, "
                  f"{rate / r['train_img_s']:.3f} of synthetic")


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "batch_size": args.batch_size, "image_size": args.image_size,
           "fp32": args.fp32}
    report = Report(args.json, env)
    report.save()
    results = [measure(arch, setting, args, device, report) for arch in args.archs for setting in args.settings]
    rows = ratios(results)
    report.set("ratios", rows)
    counts = param_counts(args)
    report.set("counts", counts)
    if results:
        print_tables(args, env, results, counts, rows)
    for backend in args.pipelines if args.data and "alone" in args.data_measures else []:
        p = report.add("pipeline", loader_rate(args, backend, device))
        print(f"input pipeline alone ({p['backend']}, {p['workers']} workers): {p['img_s']:.1f} img/s", flush=True)
    for backend in args.pipelines if args.data and "transfer" in args.data_measures else []:
        t = report.add("transfer", transfer_rate(args, backend))
        print(f"worker->main transfer ({t['backend']}, {t['workers']} workers, collate + hand-over, CPU): "
              f"{t['batches_s']:.2f} batches/s, {t['img_s']:.1f} img/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
