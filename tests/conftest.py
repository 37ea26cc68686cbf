"""Shared fixtures: tiny fake idx datasets (for offline data tests) and the real quick-profile data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from course_lib import data
from course_lib.profiles import Profile, get_profile
from tests.fake_data import write_fake_idx

# The devices this machine has: the CPU always, then CUDA and Apple's MPS when present.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else []),
           *(["mps"] if torch.backends.mps.is_available() else [])]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device of this machine in turn: a test that takes ``device`` runs once per device.

    On a machine with a GPU the same suite then checks the GPU too.
    """
    return torch.device(request.param)


@pytest.fixture
def tiny_splits() -> data.DataSplits:
    """Random 28x28 images with random labels (64 train, 32 validation, 32 test images).

    Nothing to learn in them, but the right shapes and types: enough to check
    that code runs, fast, and without any dataset on disk.
    """
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> TensorDataset:
        return TensorDataset(torch.rand(n, 1, 28, 28, generator=generator),
                             torch.randint(0, 10, (n,), generator=generator))

    return data.DataSplits(split(64), split(32), split(32), tuple(f"class {k}" for k in range(10)), "random", 0)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A data root laid out as torchvision expects: <root>/FashionMNIST/raw/<idx files>."""
    root = tmp_path / "user-data"
    write_fake_idx(root / "FashionMNIST" / "raw", compressed=False)
    return root


@pytest.fixture
def tiny_profile() -> Profile:
    return Profile(name="tiny", train_size=60, val_size=20, test_size=None,
                   epochs={"lenet300": 1}, accuracy_bar={})


@pytest.fixture(scope="session")
def quick_splits() -> data.DataSplits:
    """The real Fashion-MNIST in the quick profile (needs the data; see README 'Offline data')."""
    return data.load_splits(get_profile("quick"))
