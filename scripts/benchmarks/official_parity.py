"""Training parity with the official ECA-Net code, on the trained model: the official `main.py` and ours train
ECA-ResNet-18 on the same data with the same seeds and the same short step schedule, and this prints each
run's validation top-1 per epoch, the final top-1 per seed, and mean ± sd (min-max) per epoch.

    git clone https://github.com/BangguWu/ECANet /tmp/ECANet        # the official code, kept outside this repo
    python scripts/benchmarks/official_parity.py --official /tmp/ECANet --seeds 1-9

The official code runs in a temporary copy with the smallest edits that make it run on a CPU at the demo
set's size (`OFFICIAL_EDITS` below; each must find the text it replaces, or the script stops): `.cuda()` calls
removed, its `--seed` (nargs='+', which crashes `random.seed`) made one int, `accuracy()`'s `.view` on a
non-contiguous tensor made `.reshape`, 56 px crops (`Resize(64)` + `CenterCrop(56)` for validation), the lr
divided by 10 every 4 epochs instead of 30, and `AvgPool2d(7)` made `AdaptiveAvgPool2d(1)` (the same
operation at 224 px; at 56 px the last feature map is 2x2). Ours runs with the flags that say the same
(`OURS_FLAGS`). Both: k_size 3333, a 1000-way head, SGD lr 0.1, momentum 0.9, wd 1e-4, batch 64, 2 workers.

Results accumulate in --results (JSON, one entry per run), so a long study can be stopped and continued;
runs already in the file are not repeated. A number, not a test: training on 2 CPU cores is chaotic (two
correct implementations diverge within an epoch from float rounding), so compare distributions over seeds.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (file, text, replacement, copies expected): every edit made to the official code.
OFFICIAL_EDITS = [
    ("main.py", "model = torch.nn.DataParallel(model).cuda()", "model = torch.nn.DataParallel(model)", 1),
    ("main.py", "criterion = nn.CrossEntropyLoss().cuda(args.gpu)", "criterion = nn.CrossEntropyLoss()", 1),
    ("main.py", "target = target.cuda(args.gpu, non_blocking=True)", "target = target", 2),  # train and validate
    ("main.py", "type=int, nargs='+',", "type=int,", 1),
    ("main.py", "correct[:k].view(-1)", "correct[:k].reshape(-1)", 1),
    ("main.py", "transforms.RandomResizedCrop(224)", "transforms.RandomResizedCrop(56)", 1),
    ("main.py", "transforms.Resize(256)", "transforms.Resize(64)", 1),
    ("main.py", "transforms.CenterCrop(224)", "transforms.CenterCrop(56)", 1),
    ("main.py", "(0.1 ** (epoch // 30))", "(0.1 ** (epoch // {lr_step}))", 1),
    ("models/eca_resnet.py", "nn.AvgPool2d(7, stride=1)", "nn.AdaptiveAvgPool2d(1)", 1),
]

OURS_FLAGS = ["-a", "eca_resnet18", "--ksize", "3333", "--num-classes", "1000", "--crop-size", "56",
              "--val-resize", "64", "--crop-scale", "0.08", "--lr-schedule", "step", "--lr-gamma", "0.1",
              "--official-numerics", "--no-progress", "--no-tensorboard"]


def prepare_official(source: str, workdir: str, lr_step: int) -> str:
    """A copy of the official checkout with OFFICIAL_EDITS applied; returns its folder."""
    target = os.path.join(workdir, "official")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git", "runs"))
    for name, old, new, copies in OFFICIAL_EDITS:
        path = os.path.join(target, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text.count(old) != copies:
            raise SystemExit(f"official_parity.py: error: {name} holds {text.count(old)} copies of {old!r} (expected "
                             f"{copies}): the official code changed; update OFFICIAL_EDITS")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new.format(lr_step=lr_step)))
    return target


def run_official(code: str, data: str, seed: int, args, workdir: str) -> list:
    cwd = os.path.join(workdir, f"official-seed{seed}")
    os.makedirs(cwd, exist_ok=True)
    cmd = [sys.executable, os.path.join(code, "main.py"), "-a", "eca_resnet18", "-b", str(args.batch_size),
           "-j", str(args.workers), "--epochs", str(args.epochs), "--seed", str(seed), data]
    _run(cmd, cwd, os.path.join(cwd, "log.txt"))
    # The official code writes "epoch tensor(value)" lines to runs/<arch>_<action>/val_prec1.txt.
    with open(os.path.join(cwd, "runs", "eca_resnet18_", "val_prec1.txt")) as f:
        return [float(line.split("tensor(")[1].rstrip(")\n")) for line in f if line.strip()]


def run_ours(data: str, seed: int, args, workdir: str) -> list:
    out = os.path.join(workdir, f"ours-seed{seed}")
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), *OURS_FLAGS, "--lr-step", str(args.lr_step),
           "-b", str(args.batch_size), "-j", str(args.workers), "--epochs", str(args.epochs), "--seed", str(seed),
           "--output-dir", out, *args.ours_args.split(), data]
    _run(cmd, workdir, out + ".log")
    with open(os.path.join(out, "metrics.csv")) as f:
        header, *rows = [line.rstrip("\n").split(",") for line in f]
    return [float(row[header.index("val_top1")]) for row in rows]


def _run(cmd, cwd: str, log: str) -> None:
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"official_parity.py: error: {' '.join(cmd)} exited {done.returncode}; see {log}")


def spread(values) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} ± {sd:4.1f} ({min(values):.1f}-{max(values):.1f})"


def seed_list(text: str) -> list:
    """'1-9' or '1,2,5'."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def report(results: dict, which: list, epochs: int) -> None:
    for name in which:
        runs = results.get(name, {})
        if not runs:
            continue
        print(f"\n{name}: val top-1 per epoch")
        for seed, curve in sorted(runs.items(), key=lambda item: int(item[0])):
            print(f"  seed {seed:>3}: " + " ".join(f"{v:5.1f}" for v in curve))
        for epoch in range(epochs):
            values = [curve[epoch] for curve in runs.values() if len(curve) > epoch]
            print(f"  epoch {epoch + 1}: {spread(values)}  ({len(values)} seeds)")
    print("\nfinal val top-1, mean ± sd (min-max):")
    for name in which:
        finals = [curve[-1] for curve in results.get(name, {}).values()]
        if finals:
            print(f"  {name:8s} {spread(finals)}  n={len(finals)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", help="a checkout of github.com/BangguWu/ECANet (needed to run the official code)")
    p.add_argument("--data", default=None, help="ImageFolder root with train/ and val/ (default: the demo dataset)")
    p.add_argument("--seeds", default="1-6", help="'1-9' or '1,2,5'")
    p.add_argument("--which", default="official,ours", help="official, ours, or both")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr-step", type=int, default=4, help="epochs between the lr's divisions by 10")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ours-args", default="", help="extra flags for our main.py (e.g. an option under study)")
    p.add_argument("--results", default="parity_results.json", help="JSON file the runs accumulate in")
    args = p.parse_args(argv)
    which = args.which.split(",")
    if "official" in which and not args.official:
        p.error("--official PATH (a checkout of the official code) is needed to run it; or use --which ours")
    if args.data is None:
        sys.path.insert(0, ROOT)
        from utils.data.builtin_dataset import ensure_builtin_dataset

        args.data = str(ensure_builtin_dataset())
    results = {}
    if os.path.exists(args.results):
        with open(args.results) as f:
            results = json.load(f)
    with tempfile.TemporaryDirectory(prefix="eca-parity-") as workdir:
        code = prepare_official(args.official, workdir, args.lr_step) if "official" in which else None
        for seed in seed_list(args.seeds):
            for name in which:
                if str(seed) in results.get(name, {}):
                    continue
                start = time.perf_counter()
                curve = (run_official(code, args.data, seed, args, workdir) if name == "official"
                         else run_ours(args.data, seed, args, workdir))
                results.setdefault(name, {})[str(seed)] = curve
                with open(args.results, "w") as f:
                    json.dump(results, f, indent=1)
                print(f"seed {seed} {name:8s} " + " ".join(f"{v:5.1f}" for v in curve)
                      + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    report(results, which, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
