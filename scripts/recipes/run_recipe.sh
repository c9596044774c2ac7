#!/usr/bin/env bash
# Shared body of the recipes: train with the paper's hyper-parameters on one node, then evaluate the
# best checkpoint. Usage (from a recipe): run_recipe ENTRY ARCH KSIZE -- extra main.py flags
# Environment: NPROC (GPUs on this node, default: all visible), DATA (ImageNet root, or first argument).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_recipe() {
    local entry=$1 arch=$2 ksize=$3
    shift 4  # the three names and the "--" separator
    local data=${DATA:?set DATA=/path/to/ILSVRC2012 or pass it as the first argument}
    local nproc=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}
    local run_dir="runs/${arch}${ksize:+_k$ksize}"
    local kflag=()
    [ -n "$ksize" ] && kflag=(--ksize "$ksize")
    cd "$ROOT"
    torchrun --nproc_per_node="${nproc:-1}" "$entry" -a "$arch" "${kflag[@]}" "$@" --output-dir "$run_dir" "$data"
    python "$entry" -e --resume "$run_dir/model_best.pth.tar" --output-dir "$run_dir" "$data"
}
