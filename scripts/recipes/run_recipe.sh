#!/usr/bin/env bash
# Shared body of the recipes: train with the paper's hyper-parameters on one node, then evaluate the
# best checkpoint. Usage (from a recipe): run_recipe ENTRY ARCH KSIZE -- extra main.py flags
# Environment: NPROC (GPUs on this node, default: all visible), DATA (ImageNet root, or first argument),
# RUN_DIR (default runs/<arch>_k<ksize>), EVAL_FLAGS (extra flags of the evaluation, e.g. its resize).
# Training runs with --resume auto: running a recipe again continues it (after a stop, a crash, a requeue).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_recipe() {
    local entry=$1 arch=$2 ksize=$3
    shift 4  # the three names and the "--" separator
    local data=${DATA:?set DATA=/path/to/ILSVRC2012 or pass it as the first argument}
    local nproc=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}
    local run_dir=${RUN_DIR:-runs/${arch}${ksize:+_k$ksize}}
    local kflag=()
    [ -n "$ksize" ] && kflag=(--ksize "$ksize")
    cd "$ROOT"
    torchrun --nproc_per_node="${nproc:-1}" "$entry" -a "$arch" "${kflag[@]}" "$@" --resume auto \
        --output-dir "$run_dir" "$data"
    # shellcheck disable=SC2086  # EVAL_FLAGS holds several flags
    python "$entry" -e --resume "$run_dir/model_best.pth.tar" ${EVAL_FLAGS:-} --output-dir "$run_dir" "$data"
}
