#!/usr/bin/env bash
# se_var2_resnet50 on ImageNet (paper Table 1, SE-Var2: one weight per channel), paper recipe: --epochs 100 -b 256 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1
# Usage: DATA=/data/ILSVRC2012 [NPROC=8] bash scripts/recipes/se_var2_resnet50.sh
source "$(dirname "${BASH_SOURCE[0]}")/run_recipe.sh"
DATA=${1:-${DATA:-}} run_recipe main.py se_var2_resnet50 "" -- --epochs 100 -b 256 --lr 0.1 --momentum 0.9 --wd 1e-4 --lr-schedule step --lr-step 30 --lr-gamma 0.1
