"""Index samplers sharded by rank: torch's DistributedSampler plus what training and exact evaluation
need on top of it."""
from typing import Iterator, List

from torch.utils.data import Dataset, DistributedSampler


class ShardSampler(DistributedSampler):
    """DistributedSampler (epoch-seeded shuffle; for training, the same number of indices on every rank,
    rank r taking positions r, r+W, ... so the W shards of a step form the global batch one process
    would see) with two additions:

    - `set_epoch(epoch, skip)`: drop the first `skip` indices of this rank's share, to resume in the
      middle of an epoch;
    - evaluation (drop_last=False, no shuffle): each index goes to exactly one rank and nothing is padded,
      so every image is counted once (DistributedSampler pads with repeated images); the last ranks may
      get one index fewer.
    """

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def _indices(self) -> List[int]:
        if self.drop_last:
            return list(super().__iter__())
        return list(range(self.rank, len(self.dataset), self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip:])

    def __len__(self) -> int:
        return self.share - self.skip

    @property
    def share(self) -> int:
        """This rank's indices in a whole epoch."""
        if self.drop_last:
            return self.num_samples
        return len(range(self.rank, len(self.dataset), self.num_replicas))
