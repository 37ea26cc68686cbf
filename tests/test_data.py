"""Where the data comes from, how it is split, and how it is batched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_lib import data
from course_lib.profiles import get_profile
from tests.fake_data import N_TEST, N_TRAIN, write_fake_idx


def _never_download(name: str, root: Path) -> None:
    raise AssertionError("download must not be attempted when local files exist")


def test_user_root_is_used_first(fake_root, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    cache = tmp_path / "cache"
    write_fake_idx(cache / "FashionMNIST" / "raw", compressed=False)
    assert data.resolve_data_root(root=fake_root, cache_dir=cache, system_dirs=()) == fake_root


def test_env_var_gives_the_user_root(fake_root, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(fake_root))
    assert data.resolve_data_root(cache_dir=tmp_path / "empty-cache", system_dirs=()) == fake_root


def test_torchvision_cache_comes_before_system_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    cache = tmp_path / "cache"
    write_fake_idx(cache / "FashionMNIST" / "raw", compressed=False)
    system = write_fake_idx(tmp_path / "debian", compressed=True)
    assert data.resolve_data_root(cache_dir=cache, system_dirs=(system,)) == cache


def test_debian_gz_files_are_unpacked_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    system = write_fake_idx(tmp_path / "debian", compressed=True)
    cache = tmp_path / "cache"
    root = data.resolve_data_root(cache_dir=cache, system_dirs=(tmp_path / "missing", system))
    assert root == cache and data.has_raw_files(cache, "fashion-mnist")
    train_x, train_y, test_x, _ = data._load_raw("fashion-mnist", str(root))
    assert train_x.shape == (N_TRAIN, 28, 28) and test_x.shape == (N_TEST, 28, 28)
    assert train_x[7].unique().tolist() == [7] and train_y[13].item() == 3


def test_download_is_the_last_resort(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    calls = []

    def fake_download(name: str, root: Path) -> None:
        calls.append(root)
        write_fake_idx(root / "FashionMNIST" / "raw", compressed=False)

    monkeypatch.setattr(data, "_download", fake_download)
    cache = tmp_path / "cache"
    assert data.resolve_data_root(cache_dir=cache, system_dirs=(tmp_path / "nothing",)) == cache
    assert calls == [cache]


def test_offline_without_files_names_every_way_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)

    def offline(name: str, root: Path) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.resolve_data_root(root=tmp_path / "mine", cache_dir=tmp_path / "cache",
                               system_dirs=(tmp_path / "debian",))
    message = str(error.value)
    for hint in ("COURSE_DATA_DIR", "train-images-idx3-ubyte", str(tmp_path / "cache"),
                 "apt-get install dataset-fashion-mnist", "internet", "name resolution"):
        assert hint in message, f"the offline error should mention {hint!r}:\n{message}"


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="fashion-mnist"):
        data.dataset_info("cifar10")


def test_split_sizes_and_disjointness(fake_root, tiny_profile):
    splits = data.load_splits(tiny_profile, root=fake_root, seed=3)
    assert splits.sizes() == {"train": 60, "val": 20, "test": N_TEST}
    # Every fake image is one grey level = its index in the official training set.
    def ids(ds):
        return set(torch.round(ds.tensors[0][:, 0, 0, 0] * 0.3530 * 255 + 0.2860 * 255).int().tolist())
    assert len(ids(splits.train)) == 60 and len(ids(splits.val)) == 20
    assert not ids(splits.train) & ids(splits.val), "validation images leaked into the training split"


def test_split_is_seeded(fake_root, tiny_profile):
    a = data.load_splits(tiny_profile, root=fake_root, seed=1)
    b = data.load_splits(tiny_profile, root=fake_root, seed=1)
    c = data.load_splits(tiny_profile, root=fake_root, seed=2)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])


def test_real_quick_splits(quick_splits):
    quick = get_profile("quick")
    assert quick_splits.sizes() == {"train": quick.train_size, "val": quick.val_size, "test": 10_000}
    images = quick_splits.train.tensors[0]
    assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.float32
    # The stored normalisation constants are those of the training images.
    assert abs(images.mean().item()) < 0.02 and abs(images.std().item() - 1) < 0.02


def test_batches_cover_each_sample_once_and_are_seeded():
    ds = torch.utils.data.TensorDataset(torch.arange(10).float(), torch.arange(10))
    order = lambda seed: torch.cat([y for _, y in data.batches(ds, 4, shuffle=True, seed=seed)])
    assert sorted(order(0).tolist()) == list(range(10))
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    assert [len(y) for _, y in data.batches(ds, 4)] == [4, 4, 2]
