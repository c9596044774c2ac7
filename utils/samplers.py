"""Index samplers sharded by rank, for training and for exact evaluation."""
from typing import Iterator, List

import torch
from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Epoch-seeded shuffle (or fixed order), sharded by rank.

    Training (drop_last): every rank gets the same number of indices, as DDP needs equal step counts;
    rank r takes positions r, r+W, ... so the W shards of a step together form the same global batch
    as one process with the whole batch would see.
    Evaluation (no shuffle, no drop_last): each index goes to exactly one rank, nothing is padded, so
    every image is counted once; the last ranks may get one index fewer.
    `skip` drops the first indices of this rank's share, to resume in the middle of an epoch.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> List[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 10007 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.drop_last:
            order = order[: self.length // self.world_size * self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip:])

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.world_size - self.skip
        return len(range(self.rank, self.length, self.world_size)) - self.skip
