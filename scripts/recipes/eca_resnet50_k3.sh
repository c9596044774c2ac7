#!/usr/bin/env bash
# eca_resnet50 on ImageNet (paper Table 1, ECA: k = 3 in every stage, not the released 3557), paper recipe: --epochs 100 -b 256 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1
# Usage: DATA=/data/ILSVRC2012 [NPROC=8] bash scripts/recipes/eca_resnet50_k3.sh
source "$(dirname "${BASH_SOURCE[0]}")/run_recipe.sh"
DATA=${1:-${DATA:-}} run_recipe main.py eca_resnet50 "3" -- --epochs 100 -b 256 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1
