"""Checks of the command line's values, each failing with one line that says what is wrong and the fix.
They run before anything else (no dataset read, nothing written); utils/resolve.py checks what needs the
dataset, the checkpoint or the processes."""
import math
import os

import torch

from models import create_model, list_models, model_family, parse_ksize, unknown_model_message

from .errors import UserError

MAX_IMAGE_SIDE = 4096  # a crop of this side already needs several GB per batch; larger is a typo


def _finite(flag: str, value: float) -> float:
    if value is None or not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value}")
    return value


def _at_least(flag: str, value, low, what: str = "") -> None:
    if value is None or not value >= low:
        raise UserError(f"{flag} must be >= {low}{what}, got {value}")


def parse_arch_ksize(arch: str, ksize):
    """--ksize parsed for `arch`: one value per stage for the ResNets, one for every block of MobileNetV2."""
    if model_family(arch) != "mobilenet":
        return parse_ksize(ksize)  # raises a UserError naming the accepted forms
    try:
        return parse_ksize(ksize, num_stages=1)
    except UserError:
        raise UserError(f"--ksize {ksize}: {arch} takes one kernel size for every block (an odd number such as 3) "
                        "or 'adaptive', not one per stage") from None


def _check_sizes(args) -> None:
    positive = {"--batch-size": args.batch_size, "--epochs": args.epochs, "--crop-size": args.crop_size,
                "--val-resize": args.val_resize, "--print-freq": args.print_freq, "--lr-step": args.lr_step}
    for flag, value in positive.items():
        if value is None or value <= 0:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    for flag, value in (("--crop-size", args.crop_size), ("--val-resize", args.val_resize)):
        if value > MAX_IMAGE_SIDE:
            raise UserError(f"{flag} {value} is larger than {MAX_IMAGE_SIDE} pixels: ImageNet models train at 224")
    val_crop = args.val_crop_size or args.crop_size
    if val_crop > args.val_resize:
        flag = "--val-crop-size" if args.val_crop_size else "--crop-size"
        raise UserError(f"{flag} {val_crop} exceeds --val-resize {args.val_resize}: the center crop must fit in the "
                        "resized image")
    if args.num_classes is not None and args.num_classes <= 0:
        raise UserError(f"--num-classes must be positive, got {args.num_classes}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")


def _check_optimisation(args) -> None:
    _at_least("--lr", _finite("--lr", args.lr), 0)
    _at_least("--wd", _finite("--wd", args.weight_decay), 0)
    momentum = _finite("--momentum", args.momentum)
    if not 0.0 <= momentum < 1.0:
        raise UserError(f"--momentum must be in [0, 1), got {momentum}")
    if args.lr_gamma is not None and not _finite("--lr-gamma", args.lr_gamma) > 0:
        raise UserError(f"--lr-gamma must be > 0, got {args.lr_gamma}")
    warmup = _finite("--warmup-epochs", args.warmup_epochs)
    _at_least("--warmup-epochs", warmup, 0)
    if warmup > args.epochs:
        raise UserError(f"--warmup-epochs {warmup} is longer than --epochs {args.epochs}: the schedule would never "
                        "leave the warm-up")
    if not 0.0 <= _finite("--label-smoothing", args.label_smoothing) < 1.0:
        raise UserError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0.0 < _finite("--crop-scale", args.crop_scale) <= 1.0:
        raise UserError(f"--crop-scale must be in (0, 1], got {args.crop_scale}")
    if args.skip_nonfinite < 0 or args.max_skipped < 0:
        raise UserError("--skip-nonfinite and --max-skipped must be >= 0")


def _check_recipe_options(args) -> None:
    for flag, value in (("--mixup-alpha", args.mixup_alpha), ("--cutmix-alpha", args.cutmix_alpha)):
        _at_least(flag, _finite(flag, value), 0)
    if not 0.0 <= _finite("--random-erase", args.random_erase) <= 1.0:
        raise UserError(f"--random-erase is a probability in [0, 1], got {args.random_erase}")
    if args.clip_grad_norm is not None and not _finite("--clip-grad-norm", args.clip_grad_norm) > 0:
        raise UserError(f"--clip-grad-norm must be > 0, got {args.clip_grad_norm}")
    if args.norm_weight_decay is not None:
        _at_least("--norm-weight-decay", _finite("--norm-weight-decay", args.norm_weight_decay), 0)
    if not 0.0 < _finite("--model-ema-decay", args.model_ema_decay) < 1.0:
        raise UserError(f"--model-ema-decay must be in (0, 1), got {args.model_ema_decay}")
    _at_least("--model-ema-steps", args.model_ema_steps, 1)
    _at_least("--ra-magnitude", args.ra_magnitude, 0)
    _at_least("--augmix-severity", args.augmix_severity, 1)
    if not 0.0 <= _finite("--lr-warmup-decay", args.lr_warmup_decay) < 1.0:
        raise UserError(f"--lr-warmup-decay must be in [0, 1), got {args.lr_warmup_decay}")
    for flag, value in (("--train-crop-size", args.train_crop_size), ("--val-crop-size", args.val_crop_size)):
        if value is not None and not 0 < value <= MAX_IMAGE_SIDE:
            raise UserError(f"{flag} must be a positive number of pixels up to {MAX_IMAGE_SIDE}, got {value}")
    if (args.auto_augment or args.random_erase) and args.data_backend == "gpu":
        raise UserError("--auto-augment and --random-erase work on decoded images in the loader workers: use "
                        "--data-backend tensor or pil (the gpu pipeline decodes on the device)")


def _check_run(args) -> None:
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        raise UserError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.start_epoch is not None:
        _at_least("--start-epoch", args.start_epoch, 0)
        if args.start_epoch >= args.epochs and not args.evaluate:
            raise UserError(f"--start-epoch {args.start_epoch} is not before --epochs {args.epochs}: nothing to "
                            "train; raise --epochs")
    if not _finite("--dist-timeout", args.dist_timeout) > 0:
        raise UserError(f"--dist-timeout must be > 0 minutes, got {args.dist_timeout}")
    if args.gpu is not None and args.gpu < 0:
        raise UserError(f"--gpu must be a GPU index >= 0, got {args.gpu}")
    if args.world_size > 1 and args.rank >= args.world_size:
        raise UserError(f"--rank {args.rank} is not below --world-size {args.world_size}")


def _check_files(args) -> None:
    if args.predictions and not args.evaluate:
        raise UserError("--predictions is written by an evaluation: add -e")
    if args.resume and args.pretrained:
        raise UserError("--resume continues a run and --pretrained starts a new one from a checkpoint's weights: "
                        "give one of them")
    if args.resume == "auto" and args.evaluate:
        raise UserError("--resume auto continues training; to evaluate, give the checkpoint: -e --resume FILE")
    if args.resume and args.resume != "auto" and not os.path.isfile(args.resume):
        what = "is a folder" if os.path.isdir(args.resume) else "no such file"
        raise UserError(f"--resume {args.resume!r}: {what}; give the path of a .pth.tar checkpoint "
                        "(or --resume auto: the run folder's checkpoint, if there is one)")
    if args.pretrained is True:
        raise UserError("--pretrained needs the path of a checkpoint (released weights cannot be downloaded "
                        "here), e.g. --pretrained eca_resnet50_k3557.pth.tar")
    if args.pretrained and not os.path.isfile(args.pretrained):
        what = "is a folder" if os.path.isdir(args.pretrained) else "no such file"
        raise UserError(f"--pretrained {args.pretrained!r}: {what}")


def check_values(args) -> None:
    """Reject invalid or nonsensical values before anything starts."""
    if args.arch not in list_models():
        raise UserError(unknown_model_message(args.arch))
    _check_sizes(args)
    with torch.device("meta"):  # the model's own checks (e.g. --ksize for a model without ECA); no memory
        create_model(args.arch, k_size=parse_arch_ksize(args.arch, args.ksize), num_classes=args.num_classes or 1000)
    _check_optimisation(args)
    _check_recipe_options(args)
    _check_run(args)
    _check_files(args)
