"""utils/training/mixing.py: MixUp and CutMix on device batches, with soft targets, seeded per step."""
import torch

from utils.config.sections import MixSettings
from utils.training.mixing import BatchMixer, build_mixer

CLASSES = 8  # more than the batch: neighbours never share a class


def batch(n=6):
    torch.manual_seed(0)
    return torch.randn(n, 3, 8, 8), torch.arange(n) % CLASSES


def test_mixup_mixes_two_samples_and_their_targets():
    images, targets = batch()
    mixed, soft = BatchMixer(MixSettings(0.4, 0.0), CLASSES, seed=1, rank=0)(images, targets, epoch=0, step=3)
    assert soft.shape == (6, CLASSES) and torch.allclose(soft.sum(1), torch.ones(6))
    lam = soft[0, targets[0]].item()  # MixUp pairs each sample with its neighbour (the batch rolled by one)
    onehot = torch.nn.functional.one_hot(targets, CLASSES).float()
    assert torch.allclose(soft, lam * onehot + (1 - lam) * onehot.roll(1, 0))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.roll(1, 0), atol=1e-6)
    assert 0 < lam < 1


def test_cutmix_pastes_a_box_and_weighs_targets_by_its_area():
    images, targets = batch()
    mixed, soft = BatchMixer(MixSettings(0.0, 1.0), CLASSES, seed=2, rank=0)(images, targets, epoch=1, step=0)
    from_neighbour = (mixed != images).any(1)  # (N, H, W): pixels that changed
    pasted = (mixed == images.roll(1, 0)).all(1) & from_neighbour
    assert torch.equal(pasted, from_neighbour)  # everything that changed comes from the rolled batch
    area = from_neighbour[0].float().mean().item()
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert abs(soft[0, targets[0]].item() - (1 - area)) < 1e-6


def test_draws_depend_on_the_step_only():
    """Seeded from (seed, epoch, step, rank): the same step mixes the same way whatever came before, and the
    global random state is left as it was."""
    images, targets = batch()
    mixer = BatchMixer(MixSettings(0.2, 1.0), CLASSES, seed=3, rank=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = mixer(images, targets, epoch=2, step=7)
    assert torch.equal(torch.get_rng_state(), before)
    for _ in range(3):
        mixer(images, targets, epoch=2, step=1)
    again = mixer(images, targets, epoch=2, step=7)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other = mixer(images, targets, epoch=2, step=8)
    assert not torch.equal(first[1], other[1])


def test_channels_last_batches_stay_channels_last():
    images, targets = batch()
    mixed, _ = BatchMixer(MixSettings(0.4, 0.0), CLASSES, 0, 0)(images.to(memory_format=torch.channels_last),
                                                                   targets, 0, 0)
    assert mixed.is_contiguous(memory_format=torch.channels_last)


def test_no_mixer_without_alphas():
    assert build_mixer(MixSettings(0.0, 0.0), CLASSES, 0, 0) is None
