"""Shared fixtures: tiny, seeded data so that the tests run in seconds on two CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MU_PROGRESS", "0")
# The tests' models are tiny: one thread per process is faster, and far faster when the two test
# workers share two cores (threads that wait for each other on a busy CPU). Set before torch is
# imported, so that this process and every chapter kernel it starts inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster, and far faster when other processes share the CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_splits():
    """Digits (8x8), random 10 % forget set, 100 validation and 300 test examples."""
    from mu_lib import data

    return data.make_splits("digits", forget="random", forget_fraction=0.1, val_size=100, test_size=300, seed=0)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` beside the repository (skips when absent, saying why)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference folder {REFERENCE} is absent (it lies beside the repository in CI)")
    return REFERENCE
