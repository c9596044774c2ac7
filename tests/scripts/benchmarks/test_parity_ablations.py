"""scripts/benchmarks/parity_ablations.py on a tiny folder: every variant trains and validates (one short epoch,
batch 4, 32 px, no workers), and the variants that swap a piece that must not change the computation give the
same weights as `ours`, bit for bit (the swap is wired, and it is the identity it claims to be)."""
import pytest
import torch

from scripts.benchmarks import parity_ablations as ablations
from tests.helpers import make_image_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("ablations"), train_per_class=5, val_per_class=2)  # 15: a last batch of 3


@pytest.fixture(autouse=True)
def small(monkeypatch):
    for name, value in (("BATCH", 4), ("WORKERS", 0), ("CROP", 32), ("RESIZE", 36)):
        monkeypatch.setattr(ablations, name, value)


# Swaps that must not change a bit: collate, device stage, optimizer parameter groups (no weight-decay
# exemptions by default), LambdaLR vs the lr set per epoch, and the whole official loop (it computes what
# ours does, step for step) fed by our loader.
IDENTITIES = ("ours/default-collate", "ours/no-stage", "ours/plain-param-groups", "ours/epoch-lr",
              "official-loop+our-loader")


def test_every_variant_trains_and_the_identity_swaps_change_nothing(tiny):
    reference, curve = ablations.train_variant("ours", tiny, seed=2, epochs=1)
    assert len(curve) == 1
    expected = reference.state_dict()
    for name in ablations.VARIANTS:
        if name == "ours":
            continue
        model, curve = ablations.train_variant(name, tiny, seed=2, epochs=1)
        assert len(curve) == 1 and 0.0 <= curve[0] <= 100.0, name
        same = all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
        assert same == (name in IDENTITIES), name  # the others change the data, the order or the start
