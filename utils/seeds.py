"""The one way the project derives seeds: every random stream of a run (data order, each sample's augmentation,
batch mixing, the per-epoch reseed) is seeded by `derive_seed(run_seed, what, *where)`, a hash of the run's
seed and names for the stream and its position. Streams never share a seed by accident (the formulas of
nearby integers they replace could collide), the value does not depend on the number of processes or
workers, and torch's CPU generator, which keeps only the low 32 bits of a seed, gets well-mixed ones.
"""
import hashlib


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed for the stream named by `parts` (strings and ints) of the run seeded with `seed`."""
    text = "/".join(str(part) for part in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
