"""Where the data comes from, how it is split, and how it is batched."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from course_lib import data
from course_lib.profiles import get_profile
from tests.fake_data import N_TEST, N_TRAIN, write_fake_idx

FAKE_IMAGES_SIZE = 4 + 3 * 4 + N_TRAIN * 28 * 28  # magic + 3 dimensions + one byte per pixel


@pytest.fixture(autouse=True)
def _fresh_read_cache():
    """Each test reads its files anew and leaves no tensors in the cache behind."""
    data._read_raw.cache_clear()
    yield
    data._read_raw.cache_clear()


def _never_download(name: str, root: Path) -> None:
    raise AssertionError("download must not be attempted when local files exist")


def _truncate(path: Path, size: int) -> None:
    """Cut a file short, as an interrupted download or copy does."""
    path.write_bytes(path.read_bytes()[:size])


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
        data.resolve_data_root(cache_dir=tmp_path / "cache", system_dirs=(tmp_path / "debian",))
    message = str(error.value)
    for hint in ("COURSE_DATA_DIR", "train-images-idx3-ubyte", str(tmp_path / "cache"),
                 "apt-get install dataset-fashion-mnist", "internet", "name resolution"):
        assert hint in message, f"the offline error should mention {hint!r}:\n{message}"


def test_idx_header_gives_the_expected_size():
    header = bytes([0, 0, 0x08, 3]) + (60_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert data.idx_expected_size(header) == ((60_000, 28, 28), 16 + 60_000 * 28 * 28)
    with pytest.raises(ValueError, match="gzip"):
        data.idx_expected_size(b"\x1f\x8b\x08\x00")


def test_truncated_idx_file_is_named_with_its_size(fake_root, tiny_profile, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    images = fake_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    _truncate(images, 984)
    with pytest.raises(data.CorruptDatasetError) as error:
        data.load_splits(tiny_profile, root=fake_root)
    message = str(error.value)
    for hint in (str(images), "984 bytes", f"{FAKE_IMAGES_SIZE:,} bytes", "Delete", "download"):
        assert hint in message, f"the error should mention {hint!r}:\n{message}"


def test_damage_is_found_whatever_the_cache_holds(fake_root):
    """An error is never remembered, and a file damaged after a good read is not served from memory."""
    images = fake_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    good = images.read_bytes()
    assert data._load_raw("fashion-mnist", str(fake_root))[0].shape == (N_TRAIN, 28, 28)
    _truncate(images, 1000)
    with pytest.raises(data.CorruptDatasetError, match="1,000 bytes"):
        data._load_raw("fashion-mnist", str(fake_root))
    images.write_bytes(good)
    assert data._load_raw("fashion-mnist", str(fake_root))[0].shape == (N_TRAIN, 28, 28)


def test_still_compressed_idx_file_says_so(fake_root):
    labels = fake_root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(gzip.compress(labels.read_bytes()))
    with pytest.raises(data.CorruptDatasetError, match="gzip-compressed"):
        data.resolve_data_root(root=fake_root)


def test_truncated_cache_file_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    cache = tmp_path / "cache"
    labels = write_fake_idx(cache / "FashionMNIST" / "raw", compressed=False) / "t10k-labels-idx1-ubyte"
    _truncate(labels, 10)
    system = write_fake_idx(tmp_path / "debian", compressed=True)
    with pytest.raises(data.CorruptDatasetError, match=str(labels)):
        data.resolve_data_root(cache_dir=cache, system_dirs=(system,))


@pytest.mark.parametrize("damage", ["gzip cut short", "idx inside cut short"])
def test_damaged_debian_gz_is_named_and_nothing_half_unpacked(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    system = write_fake_idx(tmp_path / "debian", compressed=True)
    gz = system / "train-images-idx3-ubyte.gz"
    if damage == "gzip cut short":
        _truncate(gz, gz.stat().st_size // 2)
    else:
        gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes())[:5000]))
    cache = tmp_path / "cache"
    with pytest.raises(data.CorruptDatasetError) as error:
        data.resolve_data_root(cache_dir=cache, system_dirs=(system,))
    message = str(error.value)
    for hint in (str(gz), f"{gz.stat().st_size:,} bytes", "apt-get install --reinstall dataset-fashion-mnist"):
        assert hint in message, f"the error should mention {hint!r}:\n{message}"
    raw = cache / "FashionMNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists() and not list(raw.glob("*.partial"))


@pytest.fixture
def torch_home_with_data(tmp_path, monkeypatch) -> Path:
    """$TORCH_HOME whose torchvision cache holds the (fake) dataset: a fall-back would succeed."""
    home = tmp_path / "torch-home"
    write_fake_idx(home / "datasets" / "FashionMNIST" / "raw", compressed=False)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(data, "_download", _never_download)
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    assert data.resolve_data_root() == home / "datasets"  # without a named root the cache is used
    return home


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_named_root_that_does_not_exist_is_an_error(torch_home_with_data, tiny_profile, tmp_path, monkeypatch, how):
    missing = tmp_path / "no-such-folder"
    if how == "environment":
        monkeypatch.setenv(data.DATA_ENV_VAR, str(missing))
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load_splits(tiny_profile, root=missing if how == "argument" else None)
    message = str(error.value)
    for hint in (str(missing), "does not exist", "FashionMNIST/raw", "train-images-idx3-ubyte",
                 "root=" if how == "argument" else data.DATA_ENV_VAR):
        assert hint in message, f"the error should mention {hint!r}:\n{message}"


def test_named_root_without_the_dataset_is_an_error(torch_home_with_data, tiny_profile, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DatasetNotFoundError, match="holds no fashion-mnist dataset") as error:
        data.load_splits(tiny_profile, root=empty)
    assert str(empty) in str(error.value)
    assert not (empty / "FashionMNIST").exists(), "nothing may be unpacked or downloaded into a named root"


def test_named_root_names_missing_files_and_misplaced_gz(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", _never_download)
    partial = tmp_path / "partial"
    write_fake_idx(partial / "FashionMNIST" / "raw", compressed=False)
    (partial / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        data.resolve_data_root(root=partial)
    flat = write_fake_idx(tmp_path / "flat", compressed=True)
    with pytest.raises(data.DatasetNotFoundError, match="gunzip"):
        data.resolve_data_root(root=flat)


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


def test_read_idx_agrees_with_torchvision(fake_root):
    """The course reads the idx files itself (importing torchvision slows every kernel's start); torchvision's
    own reader must see the same images and labels, in the same types."""
    from torchvision import datasets

    ours = data._read_raw("fashion-mnist", str(fake_root), ())
    for train, (images, labels) in ((True, ours[:2]), (False, ours[2:])):
        theirs = datasets.FashionMNIST(str(fake_root), train=train, download=False)
        assert images.dtype == theirs.data.dtype and labels.dtype == theirs.targets.dtype
        assert torch.equal(images, theirs.data) and torch.equal(labels, theirs.targets)


def test_the_course_does_not_import_torchvision_to_read_data():
    import subprocess
    import sys

    code = ("import sys; import course_lib.data, course_lib.widgets, course_lib.chapters.ch05_rethinking_pruning; "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "an import of torchvision crept back into the course's import path"



def test_two_unpacks_of_one_file_at_once_both_succeed(tmp_path, monkeypatch):
    """Two notebooks started together on a fresh machine (a seed sweep with two jobs) unpack the same file:
    the second starts while the first is half-way, and each must still end with a whole file."""
    system = write_fake_idx(tmp_path / "debian", compressed=True)
    raw = tmp_path / "raw"
    raw.mkdir()
    source, target = system / "train-labels-idx1-ubyte.gz", raw / "train-labels-idx1-ubyte"
    unpack = data._gunzip
    started = []

    def the_other_notebook_starts_meanwhile(src: Path, dst: Path) -> str | None:
        problem = unpack(src, dst)
        if not started:
            started.append(dst)
            data._unpack_checked(source, target, "fashion-mnist")  # runs to the end in the middle of the first
        return problem

    monkeypatch.setattr(data, "_gunzip", the_other_notebook_starts_meanwhile)
    data._unpack_checked(source, target, "fashion-mnist")
    assert data.idx_problem(target) is None and not list(raw.glob("*.partial"))
