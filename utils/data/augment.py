"""Training augmentation beyond RandomResizedCrop and flip, as torchvision's classification recipes apply it:
an automatic augmentation policy after the flip, and RandomErasing on the normalised image. Built from
torchvision's own transforms (no hand-written augmentations), for the pil and tensor pipelines."""
from typing import Optional

from torchvision import transforms
from torchvision.transforms import InterpolationMode, v2

from ..config.sections import AugmentSettings
from .common import IMAGENET_MEAN


def policy(augment: Optional[AugmentSettings], api):
    """The automatic augmentation transform of `api` (torchvision.transforms or its v2), or None."""
    if augment is None or augment.auto_augment is None:
        return None
    name, bilinear = augment.auto_augment, InterpolationMode.BILINEAR
    if name == "ra":
        return api.RandAugment(interpolation=bilinear, magnitude=augment.ra_magnitude)
    if name == "ta_wide":
        return api.TrivialAugmentWide(interpolation=bilinear)
    if name == "augmix":
        return api.AugMix(interpolation=bilinear, severity=augment.augmix_severity)
    return api.AutoAugment(policy=api.AutoAugmentPolicy(name), interpolation=bilinear)


def pil_erasing(augment: Optional[AugmentSettings]):
    """RandomErasing on the normalised float image: erased pixels become 0, i.e. the dataset mean."""
    if augment is None or augment.random_erase <= 0:
        return None
    return transforms.RandomErasing(p=augment.random_erase)


def uint8_erasing(augment: Optional[AugmentSettings]):
    """The same for the tensor pipeline, which normalises on the device later: erasing with the mean colour
    in uint8 gives 0 (to within rounding) once normalised, as erasing the normalised image with 0 does."""
    if augment is None or augment.random_erase <= 0:
        return None
    return v2.RandomErasing(p=augment.random_erase, value=[round(255 * m) for m in IMAGENET_MEAN])
