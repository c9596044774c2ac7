"""What the training loader yields over epochs, checked statistically (deterministic seeds, so nothing is
flaky): the order a uniform shuffle gives, and crops and flips drawn as the official, unseeded transforms
draw them, independent of the image index and of the epoch. A loader that ordered or augmented images
differently from torch's DataLoader(shuffle=True) would fail here, in a second, without training."""
import math
import statistics

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from utils.data.common import ASPECT_RATIOS, SeededSamples
from utils.data.samplers import ShardSampler

IMAGES, CLASSES, BATCH, SIZE = 3000, 10, 64, 64  # the built-in demo set's shape: class-sorted folders


class CropProbe(Dataset):
    """Draws what RandomResizedCrop(scale 0.08-1) + RandomHorizontalFlip draw for an image (the same random
    calls), and returns them instead of pixels; targets are class-sorted as in an ImageFolder."""

    def __len__(self):
        return IMAGES

    def __getitem__(self, index):
        top, left, height, width = transforms.RandomResizedCrop.get_params(
            torch.empty(1, SIZE, SIZE), [0.08, 1.0], list(ASPECT_RATIOS))
        flip = float(torch.rand(1) < 0.5)
        return torch.tensor([height * width / SIZE ** 2, width / height, flip, top, left]), index * CLASSES // IMAGES


def epoch_draws(seed: int, epoch: int):
    samples = SeededSamples(CropProbe(), seed=seed)
    samples.set_epoch(epoch)
    sampler = ShardSampler(samples, shuffle=True, seed=seed * 10007)
    sampler.set_epoch(epoch)
    batches = list(DataLoader(samples, batch_size=BATCH, sampler=sampler, drop_last=True))
    return batches  # each: (params (B, 5), targets (B,), indices (B,))


def reference_draws(count: int) -> torch.Tensor:
    """The same draws from torch's global generator, as the official unseeded transforms make them."""
    torch.manual_seed(12345)
    probe = CropProbe()
    return torch.stack([probe[0][0] for _ in range(count)])


def correlation(a, b) -> float:
    return statistics.correlation([float(x) for x in a], [float(y) for y in b])


def test_every_image_once_per_epoch_in_a_fresh_order():
    orders = []
    for epoch in range(3):
        indices = torch.cat([b[2] for b in epoch_draws(seed=3, epoch=epoch)]).tolist()
        assert len(indices) == IMAGES // BATCH * BATCH and len(set(indices)) == len(indices)
        orders.append(indices)
    assert abs(correlation(orders[0], orders[1])) < 0.1 and abs(correlation(orders[1], orders[2])) < 0.1


def test_batches_mix_the_classes_as_a_uniform_shuffle_does():
    """Chi-square of the per-batch class counts against the expected 6.4 per class: 9 degrees of freedom, so
    its mean over the epoch's 46 batches lies near 9 (sd of that mean about 0.6) for a uniform shuffle."""
    for seed in range(3):
        expected = BATCH / CLASSES
        chi = [sum((int((b[1] == c).sum()) - expected) ** 2 / expected for c in range(CLASSES))
               for b in epoch_draws(seed, epoch=0)]
        assert 7.0 < statistics.mean(chi) < 11.0, (seed, statistics.mean(chi))


def test_crops_and_flips_have_the_official_distribution():
    ours = torch.cat([b[0] for b in epoch_draws(seed=1, epoch=0)])
    reference = reference_draws(len(ours))
    for column, name in ((0, "area"), (1, "aspect ratio"), (2, "flip")):
        mean, ref = ours[:, column].mean().item(), reference[:, column].mean().item()
        stderr = math.sqrt(ours[:, column].var().item() / len(ours) + reference[:, column].var().item() / len(ours))
        assert abs(mean - ref) < 4 * stderr, (name, mean, ref)
    # Same distribution, not just the same mean: two-sample Kolmogorov-Smirnov distance of the crop areas.
    a, b = ours[:, 0].sort().values, reference[:, 0].sort().values
    grid = torch.linspace(0, 1, 201)
    ks = (torch.searchsorted(a, grid).float() / len(a) - torch.searchsorted(b, grid).float() / len(b)).abs().max()
    assert ks < 1.63 * math.sqrt(2 / len(a)), ks  # the 1% critical value


def test_augmentation_is_independent_of_index_class_and_epoch():
    first = {}
    for epoch in (0, 1):
        by_index = {}
        for params, targets, indices in epoch_draws(seed=2, epoch=epoch):
            for p, t, i in zip(params, targets, indices.tolist()):
                by_index[i] = (p, int(t))
        first.setdefault("epochs", []).append(by_index)
    e0, e1 = first["epochs"]
    shared = sorted(set(e0) & set(e1))
    area0 = [e0[i][0][0] for i in shared]
    assert abs(correlation(area0, [e1[i][0][0] for i in shared])) < 0.1  # a fresh crop every epoch
    neighbours = [i for i in shared if i + 1 in e0]
    assert abs(correlation([e0[i][0][0] for i in neighbours], [e0[i + 1][0][0] for i in neighbours])) < 0.1
    class_means = [statistics.mean(float(e0[i][0][0]) for i in shared if e0[i][1] == c) for c in range(CLASSES)]
    assert max(class_means) - min(class_means) < 0.06, class_means  # per-class mean area within noise
