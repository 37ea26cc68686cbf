"""Shared fixtures: tiny fake idx datasets (for offline data tests) and the real quick-profile data."""

from __future__ import annotations

from pathlib import Path

import pytest

from course_lib import data
from course_lib.profiles import Profile, get_profile
from tests.fake_data import write_fake_idx


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
