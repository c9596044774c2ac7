"""Shared test setup: make the repository importable, keep torch to the 2 CI cores, keep run folders out of the
checkout, and leave tests/cluster (a real SLURM, started by tests/cluster/run.sh in CI) out of the default run."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Under pytest-xdist (-n 2) each of the two workers computes on one core.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

CLUSTER = os.path.join(ROOT, "tests", "cluster")
RUNS = os.path.join(ROOT, "runs")  # main.py's default output folder, relative to where it is started


def _listing(folder: str) -> set:
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


@pytest.fixture(autouse=True, scope="session")
def nothing_written_into_the_checkouts_runs_folder():
    """Every test run gives its run an --output-dir under tmp_path: a run folder the suite leaves in the
    checkout would be mistaken for the user's own."""
    before = _listing(RUNS)
    yield
    added = _listing(RUNS) - before
    assert not added, f"tests wrote {sorted(added)} into {RUNS}: give those runs an --output-dir under tmp_path"


def _named_on_the_command_line(config, folder: str) -> bool:
    """Whether an argument of this pytest run is `folder` or lies inside it (`pytest tests/cluster`)."""
    for arg in config.args:
        path = os.path.abspath(os.path.join(str(config.invocation_params.dir), arg.split("::")[0]))
        if path == folder or path.startswith(folder + os.sep):
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    """tests/cluster runs only when asked for: ECA_CLUSTER_TESTS=1, or its path given to pytest (run.sh does)."""
    if str(collection_path) != CLUSTER:
        return None
    if os.environ.get("ECA_CLUSTER_TESTS") == "1" or _named_on_the_command_line(config, CLUSTER):
        return None
    return True


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of the CLI and scripts (real processes, torchrun, "
                                       "signals); tests/e2e/ holds them. Fast inner loop: -m 'not slow'")


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker("slow")
