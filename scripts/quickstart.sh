#!/usr/bin/env bash
# Quick start, command 1: set up the environment (first run only), then train ECA-ResNet-18 on the
# built-in demo dataset (generated once into ~/.cache/eca-net). Each call trains a new run in its own folder
# (runs/quickstart-<date>-<time>); extra arguments go to main.py (a later --output-dir wins).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_env requirements.txt
cd "$ROOT"
exec "$PYTHON" main.py -a eca_resnet18 --output-dir "runs/quickstart-$(date +%Y%m%d-%H%M%S)" "$@"
