"""utils/data/samplers.py: DistributedSampler for training, plus mid-epoch skips and unpadded evaluation."""
from torch.utils.data import DistributedSampler

from utils.data.samplers import ShardSampler

DATA = list(range(23))  # not divisible by the world sizes below


def test_training_shards_are_torchs_distributed_sampler():
    for world in (1, 2, 3):
        for rank in range(world):
            ours = ShardSampler(DATA, rank, world, shuffle=True, seed=7)
            torch_own = DistributedSampler(DATA, world, rank, shuffle=True, seed=7, drop_last=True)
            for epoch in (0, 3):
                ours.set_epoch(epoch)
                torch_own.set_epoch(epoch)
                assert list(ours) == list(torch_own) and len(ours) == len(torch_own)


def test_skip_resumes_in_the_middle_of_this_ranks_share():
    sampler = ShardSampler(DATA, 1, 2, shuffle=True, seed=3)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == whole[4:] and len(sampler) == len(whole) - 4 and sampler.share == len(whole)


def test_evaluation_gives_every_index_to_exactly_one_rank():
    for world in (1, 2, 3, 5):
        shards = [list(ShardSampler(DATA, r, world, shuffle=False, drop_last=False)) for r in range(world)]
        assert sorted(i for shard in shards for i in shard) == DATA  # no padding, no repeats
        assert [len(ShardSampler(DATA, r, world, shuffle=False, drop_last=False)) for r in range(world)] == \
            [len(s) for s in shards]
