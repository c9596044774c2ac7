"""utils/data/augment.py: torchvision's augmentation policies and RandomErasing in both CPU pipelines."""
import pytest
import torch
from PIL import Image

from utils.data import pil, tensor
from utils.config.sections import AugmentSettings as Augment
from utils.data.tensor import Normalize


@pytest.mark.parametrize("name", ["ra", "ta_wide", "augmix", "imagenet"])
def test_every_policy_runs_in_both_pipelines_and_changes_images(name):
    torch.manual_seed(0)
    image = Image.effect_mandelbrot((64, 48), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    plain_pil = pil.train_transform(32, 0.08)
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        reference = plain_pil(image)
        torch.manual_seed(seed)
        augmented = pil.train_transform(32, 0.08, Augment(name))(image)
        changed += not torch.allclose(reference, augmented)
        torch.manual_seed(seed)
        uint8 = tensor.train_transform(32, 0.08, Augment(name))(torch.from_numpy(__import__("numpy").array(image))
                                                                .permute(2, 0, 1).contiguous())
        assert uint8.dtype == torch.uint8 and uint8.shape == (3, 32, 32)
    assert changed >= 3, name  # a policy may draw the identity now and then, not every time


def test_random_erasing_erases_with_the_mean_in_both_pipelines():
    """pil erases the normalised image with 0; tensor erases the uint8 crop with the mean colour, which the
    device normalises to 0 (to within one rounding step)."""
    image = Image.new("RGB", (40, 40), (250, 10, 10))
    torch.manual_seed(1)
    erased = pil.train_transform(32, 1.0, Augment(random_erase=1.0))(image)
    assert (erased == 0).all(0).float().mean() > 0.01
    torch.manual_seed(1)
    uint8 = tensor.train_transform(32, 1.0, Augment(random_erase=1.0))(torch.tensor([250, 10, 10], dtype=torch.uint8)
                                                                       .view(3, 1, 1).expand(3, 40, 40).contiguous())
    normalised = Normalize(torch.device("cpu"))(uint8[None])[0]
    erased_region = (normalised.abs() < 0.02).all(0)
    assert erased_region.float().mean() > 0.01
    assert torch.equal(erased_region, (erased == 0).all(0))  # the same draws: the same box
