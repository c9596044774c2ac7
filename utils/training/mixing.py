"""Batch-level MixUp and CutMix with soft targets, from torchvision.transforms.v2 (MixUp, CutMix, RandomChoice
between the two when both are on, as torchvision's recipes do).

They run on the device batch the data stage returns, so every input pipeline gets them. Their random draws
come from torch's global generator; each batch draws from a generator state set from (seed, epoch, step,
rank) inside torch.random.fork_rng, so a run resumed in the middle of an epoch mixes exactly as the
uninterrupted one did, and nothing else's randomness moves.
"""
from typing import Optional, Tuple

import torch
from torchvision.transforms import v2

from ..config.sections import MixSettings
from ..seeds import derive_seed


class BatchMixer:
    def __init__(self, settings: MixSettings, num_classes: int, seed: int, rank: int):
        mixes = []
        if settings.mixup_alpha > 0:
            mixes.append(v2.MixUp(alpha=settings.mixup_alpha, num_classes=num_classes))
        if settings.cutmix_alpha > 0:
            mixes.append(v2.CutMix(alpha=settings.cutmix_alpha, num_classes=num_classes))
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
        self.seed, self.rank = seed, rank

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) \
            -> Tuple[torch.Tensor, torch.Tensor]:
        """(mixed images in the input's memory format, soft targets (N, classes) that sum to 1)."""
        layout = torch.channels_last if images.dim() == 4 and images.is_contiguous(
            memory_format=torch.channels_last) and not images.is_contiguous() else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "mixing", epoch, step, self.rank))
            mixed, soft = self.mix(images, targets)
        return mixed.contiguous(memory_format=layout), soft


def build_mixer(settings: MixSettings, num_classes: int, seed: int, rank: int) -> Optional[BatchMixer]:
    return BatchMixer(settings, num_classes, seed, rank) if settings.enabled else None
