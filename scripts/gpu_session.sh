#!/usr/bin/env bash
# Every GPU measurement the speed work needs (about eleven minutes of limits in all on an H100-class
# GPU): CUDA correctness checks first, then the block-end micro-benchmark, whole-model training/eval
# throughput, and the input pipelines on generated ImageNet-sized JPEGs. Results (logs and JSON) go to
# $OUT (default: gpu_results/). Each step has its own time limit, so a slow step costs its numbers, not
# the others'. Name the steps to run a part, e.g. to stay under a per-command limit of ten minutes:
#
#   OUT=/tmp/gpu bash scripts/gpu_session.sh checks block_end jpegs resnet50
#   OUT=/tmp/gpu bash scripts/gpu_session.sh mobilenet
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
WANTED=" ${*:-checks block_end jpegs resnet50 mobilenet} "
step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, go on whatever happens
    local name=$1 limit=$2
    shift 2
    [[ "$WANTED" == *" $name "* ]] || return 0
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "   exit $? ; $(grep -v '^W[0-9]' "$OUT/$name.log" | tail -n 3 | tr '\n' ' ')"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; "$PY" -c \
    "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; \
    "$PY" -c "from utils.data.gpu import nvimgcodec_available as a; print('nvimgcodec', a())"; } >"$OUT/env.txt" 2>&1
step checks 120 "$PY" scripts/gpu_checks.py --json "$OUT/gpu_checks.json"
step block_end 90 "$PY" scripts/benchmark_block_end.py
step jpegs 60 "$PY" scripts/make_jpeg_folder.py /tmp/eca_jpegs --classes 20 --per-class 160 --val-per-class 5
step resnet50 270 "$PY" scripts/benchmark.py --archs eca_resnet50,resnet50 --settings official,compiled_fused \
    --batch-size 256 --steps 15 --warmup 8 --repeats 3 --data /tmp/eca_jpegs --loader-batches 8 \
    --json "$OUT/bench_resnet50.json"
step mobilenet 180 "$PY" scripts/benchmark.py --archs eca_mobilenet_v2,mobilenet_v2 --settings official,compiled_fused \
    --batch-size 256 --steps 15 --warmup 8 --repeats 3 --no-flops --json "$OUT/bench_mobilenet.json"
