#!/usr/bin/env bash
# eca_mobilenet_v2 on ImageNet, paper recipe: --epochs 400 -b 96 --lr 0.045 --momentum 0.9 --wd 4e-5 --lr-schedule exp --lr-gamma 0.98
# Usage: DATA=/data/ILSVRC2012 [NPROC=8] bash scripts/recipes/eca_mobilenet_v2.sh
source "$(dirname "${BASH_SOURCE[0]}")/run_recipe.sh"
DATA=${1:-${DATA:-}} run_recipe light_main.py eca_mobilenet_v2 "" -- --epochs 400 -b 96 --lr 0.045 --momentum 0.9 --wd 4e-5 --lr-schedule exp --lr-gamma 0.98
