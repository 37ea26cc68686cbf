"""Fashion-MNIST (and MNIST), found offline first, held in memory as tensors.

Where the files come from, in this order:

1. a data root you give: the ``root`` argument or the ``COURSE_DATA_DIR``
   environment variable;
2. an existing torchvision cache: ``$TORCH_HOME/datasets`` (by default
   ``~/.cache/torch/datasets``);
3. the files of Debian's ``dataset-fashion-mnist`` package in
   ``/usr/share/datasets/fashion-mnist`` (unpacked once into the cache);
4. only then a download through ``torchvision.datasets``.

If none of these works (no files, no network) you get a
:class:`DatasetNotFoundError` naming each way to provide the data.

Why tensors and not a ``Dataset`` of PIL images? Fashion-MNIST is 47 MB as
``uint8``: it fits in memory many times over. Normalising it once and slicing
whole mini-batches out of one tensor removes the per-image Python work that
otherwise dominates a CPU epoch of a small network.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset
from torchvision import datasets

from course_lib.profiles import Profile, shifted_seed

DATA_ENV_VAR = "COURSE_DATA_DIR"

# The idx files every MNIST-style dataset consists of (torchvision expects them
# uncompressed in ``<root>/<ClassName>/raw/``).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What the course needs to know about one dataset."""

    torchvision_class: type
    classes: tuple[str, ...]
    mean: float  # of the 60 000 training images, pixel values scaled to [0, 1]
    std: float
    system_dirs: tuple[Path, ...]  # directories where an OS package puts the .gz files
    system_package: str | None


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        torchvision_class=datasets.FashionMNIST,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mean=0.2860,
        std=0.3530,
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        system_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetInfo(
        torchvision_class=datasets.MNIST,
        classes=tuple(str(d) for d in range(10)),
        mean=0.1307,
        std=0.3081,
        system_dirs=(),
        system_package=None,
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files could not be found locally nor downloaded."""


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by its course name (``"fashion-mnist"`` or ``"mnist"``)."""
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; the course knows {sorted(DATASETS)}.")
    return DATASETS[key]


def default_cache_dir() -> Path:
    """torchvision's conventional dataset cache: ``$TORCH_HOME/datasets``."""
    torch_home = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    return Path(torch_home) / "datasets"


def has_raw_files(root: Path, name: str) -> bool:
    """True when ``root`` holds the four uncompressed idx files torchvision reads."""
    raw = Path(root) / dataset_info(name).torchvision_class.__name__ / "raw"
    return all((raw / f).is_file() for f in IDX_FILES)


def _unpack_system_files(source: Path, root: Path, name: str) -> bool:
    """Gunzip an OS package's ``*.gz`` idx files into ``root/<Class>/raw``.

    The package's .gz files differ byte-for-byte from the ones torchvision
    downloads (so their checksums do not match); torchvision accepts the
    uncompressed files, so we unpack them.
    """
    if not all((source / f"{f}.gz").is_file() for f in IDX_FILES):
        return False
    raw = root / dataset_info(name).torchvision_class.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in IDX_FILES:
        partial = raw / f"{f}.partial"
        with gzip.open(source / f"{f}.gz", "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(raw / f)  # atomic: a reader never sees half a file
    return True


def _download(name: str, root: Path) -> None:
    """Let torchvision download the dataset into ``root`` (needs the internet)."""
    info = dataset_info(name)
    info.torchvision_class(str(root), train=True, download=True)
    info.torchvision_class(str(root), train=False, download=True)


def resolve_data_root(
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    system_dirs: tuple[Path, ...] | None = None,
    allow_download: bool = True,
) -> Path:
    """Find (or fetch) a dataset and return the root torchvision should read it from.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        root: your own data directory; ``COURSE_DATA_DIR`` is used when this is ``None``.
        cache_dir: torchvision cache to look in and to unpack/download into
            (default: :func:`default_cache_dir`).
        system_dirs: where an OS package keeps the .gz files (default: the dataset's own).
        allow_download: try torchvision's download as the last resort.

    Raises:
        DatasetNotFoundError: nothing found and no download possible; the message
            lists each way to provide the files.
    """
    info = dataset_info(name)
    user_root = root if root is not None else os.environ.get(DATA_ENV_VAR)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sources = info.system_dirs if system_dirs is None else system_dirs

    if user_root is not None and has_raw_files(Path(user_root), name):
        return Path(user_root)
    if has_raw_files(cache, name):
        return cache
    # From here on files are written, into the user's root when given, else the cache.
    target = Path(user_root) if user_root is not None else cache
    for source in sources:
        if _unpack_system_files(Path(source), target, name):
            return target
    download_error: Exception | None = None
    if allow_download:
        try:
            _download(name, target)
            if has_raw_files(target, name):
                return target
        except Exception as error:  # noqa: BLE001 - any failure means "offline": report all options
            download_error = error

    raw = f"<root>/{info.torchvision_class.__name__}/raw/"
    ways = [
        f"  1. put the four uncompressed idx files ({', '.join(IDX_FILES)}) in {raw} and pass "
        f"root=<root> or set {DATA_ENV_VAR}=<root>"
        + (f" (looked in {user_root})" if user_root is not None else ""),
        f"  2. place them in torchvision's cache {cache / info.torchvision_class.__name__ / 'raw'}",
    ]
    if info.system_package:
        ways.append(
            f"  3. install the Debian package: `sudo apt-get install {info.system_package}` "
            f"(looked in {', '.join(str(s) for s in sources) or 'no directory'})"
        )
    ways.append(
        "  4. connect to the internet so torchvision can download it"
        + (f" (the download failed: {download_error})" if download_error else " (download disabled)")
    )
    raise DatasetNotFoundError(f"Could not find the {name} dataset. Provide it one of these ways:\n" + "\n".join(ways))


@dataclass
class DataSplits:
    """Train / validation / test splits as in-memory tensor datasets.

    The validation split is carved out of the official training set with a
    seeded permutation; the test set is the official one and is used only for
    the final numbers, never to choose anything.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    classes: tuple[str, ...]
    name: str
    seed: int

    def sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


@lru_cache(maxsize=4)
def _load_raw(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    info = dataset_info(name)
    train = info.torchvision_class(root, train=True, download=False)
    test = info.torchvision_class(root, train=False, download=False)
    return train.data, train.targets, test.data, test.targets


def normalise(images: torch.Tensor, name: str = "fashion-mnist") -> torch.Tensor:
    """``uint8`` images (N, 28, 28) -> float32 (N, 1, 28, 28), zero mean and unit std."""
    info = dataset_info(name)
    return ((images.float() / 255.0 - info.mean) / info.std).unsqueeze(1)


def load_splits(
    profile: Profile,
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    seed: int = 0,
) -> DataSplits:
    """Load a dataset, normalise it and split it as the profile says.

    ``profile.val_size`` images of the official training set become the
    validation split (the same images for the same seed and size); the next
    ``profile.train_size`` (all the rest when ``None``) are the training split.
    """
    data_root = resolve_data_root(name, root)
    train_x, train_y, test_x, test_y = _load_raw(name, str(data_root))
    n = len(train_x)
    if not 0 < profile.val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {profile.val_size}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(shifted_seed(seed)))
    val_idx = order[: profile.val_size]
    rest = order[profile.val_size :]
    train_idx = rest if profile.train_size is None else rest[: profile.train_size]
    test_n = len(test_x) if profile.test_size is None else min(profile.test_size, len(test_x))
    return DataSplits(
        train=TensorDataset(normalise(train_x[train_idx], name), train_y[train_idx]),
        val=TensorDataset(normalise(train_x[val_idx], name), train_y[val_idx]),
        test=TensorDataset(normalise(test_x[:test_n], name), test_y[:test_n]),
        classes=dataset_info(name).classes,
        name=name,
        seed=seed,
    )


def batches(dataset: TensorDataset, batch_size: int = 128, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A ``DataLoader`` that slices whole mini-batches out of in-memory tensors.

    A ``BatchSampler`` hands the dataset a list of indices at once and
    ``batch_size=None`` switches off per-sample collation, so each batch is one
    tensor indexing operation instead of ``batch_size`` Python calls.
    Shuffling is seeded: the same seed gives the same order of batches.
    """
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)
