#!/usr/bin/env bash
# ECA-ResNet-50 (released kernel sizes 3557) with torchvision's improved ResNet-50 recipe: the hyper-parameters
# torchvision published for its ResNet50_Weights.IMAGENET1K_V2 (80.858% top-1 for plain ResNet-50; its
# classification README and the blog post "How to Train State-Of-The-Art Models Using TorchVision's Latest
# Primitives"): 600 epochs, 8 GPUs x batch 128 (-b is the global batch here: 1024), lr 0.5, cosine schedule
# after a 5-epoch linear warm-up from 0.01 x lr, TrivialAugment, random erasing 0.1, weight decay 2e-5 (0 on
# normalisation layers), label smoothing 0.1, MixUp 0.2 / CutMix 1.0, train crop 176, evaluation resize 232 and
# crop 224, EMA of the weights (evaluated at the end: it is what torchvision released).
# Not reproduced: torchvision's repeated-augmentation sampler (--ra-sampler --ra-reps 4) is not implemented here.
# Its accuracy with ECA is unmeasured here.
# Usage: DATA=/data/ILSVRC2012 [NPROC=8] bash scripts/recipes/eca_resnet50_improved.sh
source "$(dirname "${BASH_SOURCE[0]}")/run_recipe.sh"
DATA=${1:-${DATA:-}} RUN_DIR=runs/eca_resnet50_improved EVAL_FLAGS="--val-resize 232 --val-crop-size 224 --model-ema" \
    run_recipe main.py eca_resnet50 "3557" -- --epochs 600 -b 1024 --lr 0.5 --lr-scheduler cosineannealinglr \
    --lr-warmup-epochs 5 --lr-warmup-method linear --lr-warmup-decay 0.01 --auto-augment ta_wide --random-erase 0.1 \
    --wd 2e-5 --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \
    --train-crop-size 176 --val-resize 232 --val-crop-size 224 --model-ema
