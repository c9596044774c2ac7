"""Shared test setup: make the repository importable and keep torch to the 2 CI cores."""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
torch.set_num_threads(2)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of the CLI and scripts (subprocesses, torchrun, "
                                       "signals); tests/e2e/ holds them. Fast inner loop: -m 'not slow'")


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker("slow")
