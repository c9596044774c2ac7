#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA correctness tests and every GPU measurement of BENCHMARKS.md, in one
# command (about eight minutes on an H100/H200-class GPU, cold torch.compile included), in order of value:
#
#   checks     pytest tests/gpu: fused ECA vs reference (TF32 off), device geometry, decoders, pinned loader,
#              the stage one batch ahead on a side stream
#   jpegs      ImageNet-sized generated JPEGs (reused if already there)
#   resnet50   ECA-ResNet-50 vs ResNet-50, official recipe vs fastest settings, ECA-R50 also trained from the
#              JPEG folder through the tensor and gpu pipelines          -> decides --data-backend auto
#   pipelines  each input pipeline alone, and the worker->main hand-over
#   block_end  BN + ECA + residual alone, compiled: conv vs fused        -> decides --eca-impl auto
#   mobilenet  ECA-MobileNetV2 vs MobileNetV2, official vs fastest (last: it gets what time is left)
#
#   OUT=/tmp/gpu bash scripts/benchmarks/gpu_session.sh                 # everything
#   bash scripts/benchmarks/gpu_session.sh --wheels DIR checks resnet50  # named steps only
#
# Optional packages: thop (FLOPs columns) and nvidia-nvimgcodec-cu13 (the gpu pipeline's fastest decoder) are
# used when installed; on a machine without a package index, put their wheels in a folder (--wheels DIR or
# $WHEELS; BENCHMARKS.md says which) and they are installed from it with pip --no-index.
# Each step runs under its own `timeout` (its limit, or what is left of BUDGET seconds, whichever is less),
# so a slow step costs only its own numbers; the JSON files are rewritten after every measurement. Under
# $OUT: session.log (everything), gpu_checks.xml, bench_resnet50.json, bench_pipelines.json, block_end.txt,
# bench_mobilenet.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHEELS="${WHEELS:-.whl}"
if [[ "${1:-}" == "--wheels" ]]; then
    WHEELS="$2"
    shift 2
fi
OUT="${OUT:-gpu_results}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET:-470}"
JPEGS="${JPEGS:-/tmp/eca_jpegs}"
mkdir -p "$OUT"
LOG="$OUT/session.log"
: >"$LOG"
WANTED=" ${*:-checks jpegs resnet50 pipelines block_end mobilenet} "
export PYTHONUNBUFFERED=1

say() { echo "$*" | tee -a "$LOG"; }

step() {  # step NAME LIMIT COMMAND...: run under min(LIMIT, time left), log to $LOG, go on whatever happens
    local name=$1 limit=$2 left=$((BUDGET - SECONDS)) started=$SECONDS part="/tmp/eca_step_$1.log"
    shift 2
    [[ "$WANTED" == *" $name "* ]] || return 0
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        say "== $name: skipped, ${left}s of the ${BUDGET}s budget left"
        return 0
    fi
    say "== $name (limit ${limit}s, at ${SECONDS}s)"
    timeout "$limit" "$@" >"$part" 2>&1
    local code=$?
    { echo "---- $name: $*"; cat "$part"; } >>"$LOG"
    local note=""
    [[ $code == 124 ]] && note=" (time limit: the rest of this step's numbers are lost)"
    say "   exit $code after $((SECONDS - started))s$note"
    # The lines worth reading in the reply: verdicts, table rows and rates, not compiler chatter.
    grep -E '^(PASS|FAIL)|^\| |img/s|batches/s|^#|Error|error:' "$part" | grep -v '^|---' | tail -n 40
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
    "$PY" -c "import os, sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__,
        'torchvision', torchvision.__version__, 'cpus', os.cpu_count())"
} 2>&1 | tee -a "$LOG"

# Optional packages from the wheels folder (the GPU machine reaches no package index).
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    for package in thop nvidia-nvjpeg nvidia-nvimgcodec-cu13; do
        compgen -G "$WHEELS/${package//-/_}-*.whl" >/dev/null || continue
        timeout 120 "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$package" >>"$LOG" 2>&1 \
            && say "installed $package from $WHEELS" || say "could not install $package from $WHEELS (see $LOG)"
    done
else
    say "no wheels in $WHEELS: nothing installed"
fi
FLOPS=(--no-flops)
"$PY" -c "import thop" 2>/dev/null && FLOPS=() || say "thop not installed: Param/FLOPs columns skipped"
"$PY" -c "from utils.data.gpu import nvimgcodec_available as a; import sys; sys.exit(0 if a() else 1)" 2>>"$LOG" \
    && say "nvImageCodec: available (gpu pipeline and decoder checks use it)" \
    || say "nvImageCodec: not installed (its decoder check is skipped; the gpu pipeline uses torchvision's nvJPEG)"

BENCH=("$PY" scripts/benchmarks/benchmark.py --batch-size 256 --steps 10 --warmup 5 --repeats 3 --workers 16)
step checks 90 "$PY" -m pytest -q -rA tests/gpu --junitxml="$OUT/gpu_checks.xml"
if [[ ! -d "$JPEGS/train" ]]; then
    step jpegs 25 "$PY" scripts/benchmarks/make_jpeg_folder.py "$JPEGS" --classes 16 --per-class 128 --val-per-class 4
fi
step resnet50 210 "${BENCH[@]}" --archs eca_resnet50,resnet50 --settings official,compiled_fused "${FLOPS[@]}" \
    --data "$JPEGS" --pipelines tensor,gpu --data-measures train --folder-archs eca_resnet50 --loader-batches 8 \
    --json "$OUT/bench_resnet50.json"
step pipelines 50 "${BENCH[@]}" --archs "" --data "$JPEGS" --pipelines pil,tensor,gpu --data-measures alone,transfer \
    --loader-batches 8 --json "$OUT/bench_pipelines.json"
step block_end 40 bash -c "set -o pipefail; $PY scripts/benchmarks/block_end.py --modes compiled \
    --variants 'plain,eca conv,eca fused' | tee '$OUT/block_end.txt'"
step mobilenet 150 "${BENCH[@]}" --archs eca_mobilenet_v2,mobilenet_v2 --settings official,compiled_fused \
    "${FLOPS[@]}" --json "$OUT/bench_mobilenet.json"

# The numbers the decisions and targets are read from (BENCHMARKS.md, "GPU").
OUT="$OUT" "$PY" - <<'PYTHON' 2>&1 | tee -a "$LOG"
import json, os, re
import xml.etree.ElementTree as ET
out = os.environ["OUT"]


def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return {}


def rate(report, arch, setting, key):
    rows = [r for r in report.get("results", []) if (r["arch"], r["setting"]) == (arch, setting)]
    return rows[0].get(key) if rows else None


def ratio(a, b):
    return a / b if a and b else None


def show(label, value, note=""):
    print(f"  {label}: {'-' if value is None else f'{value:.3f}'}{note}")


r50, mnv2 = load("bench_resnet50.json"), load("bench_mobilenet.json")
print("== summary")
try:
    cases = list(ET.parse(os.path.join(out, "gpu_checks.xml")).getroot().iter("testcase"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = sum(c.find("skipped") is not None for c in cases)
    print(f"  tests/gpu: {len(cases) - len(failed) - skipped} of {len(cases)} passed, {skipped} skipped"
          + "".join(f"; FAIL {name}" for name in failed))
except (OSError, ET.ParseError):
    print("  tests/gpu: no results")
fast, official = ("eca_resnet50", "compiled_fused"), ("eca_resnet50", "official")
show("ECA-R50 train, fastest / official", ratio(rate(r50, *fast, "train_img_s"),
                                                rate(r50, *official, "train_img_s")), " (target >= 3.5)")
show("ECA-R50 / R50 train, fastest", ratio(rate(r50, *fast, "train_img_s"),
                                           rate(r50, "resnet50", "compiled_fused", "train_img_s")), " (target >= 0.95)")
show("ECA-R50 eval, fastest / official", ratio(rate(r50, *fast, "eval_img_s"),
                                               rate(r50, *official, "eval_img_s")), " (target >= 2)")
synthetic, folder = rate(r50, *fast, "train_img_s"), rate(r50, *fast, "from_folder") or {}
for backend, value in folder.items():
    show(f"ECA-R50 fastest from JPEGs via {backend}, img/s", value,
         f", {ratio(value, synthetic) or 0:.3f} of synthetic (targets >= 4500 img/s, >= 0.9)")
if "gpu" in folder and "tensor" in folder:
    show("--data-backend auto: gpu / tensor from JPEGs (> 1.1 and all checks PASS: auto picks gpu)",
         ratio(folder["gpu"], folder["tensor"]))
if os.path.exists(os.path.join(out, "block_end.txt")):
    text = open(os.path.join(out, "block_end.txt")).read()
    block = {m.group(1): float(m.group(2)) for m in re.finditer(r"\| compiled \| ([a-z ]+) \| ([0-9.]+)", text)}
    show("--eca-impl auto: fused / conv block-end train time, compiled (< 0.9 and all checks PASS: auto may pick fused)",
         ratio(block.get("eca fused"), block.get("eca conv")))
show("ECA-MobileNetV2 train, fastest / official", ratio(rate(mnv2, "eca_mobilenet_v2", "compiled_fused", "train_img_s"),
                                                        rate(mnv2, "eca_mobilenet_v2", "official", "train_img_s")),
     " (target >= 3.3)")
PYTHON
say "== done after ${SECONDS}s; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
