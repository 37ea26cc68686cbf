"""Fashion-MNIST (and MNIST), found offline first, held in memory as tensors.

Where the files come from, in this order:

1. a data root you give: the ``root`` argument or the ``COURSE_DATA_DIR``
   environment variable;
2. an existing torchvision cache: ``$TORCH_HOME/datasets`` (by default
   ``~/.cache/torch/datasets``);
3. the files of Debian's ``dataset-fashion-mnist`` package in
   ``/usr/share/datasets/fashion-mnist`` (unpacked once into the cache);
4. only then a download through ``torchvision.datasets``.

The files are read by :func:`read_idx` (a few lines; tested to agree with torchvision's reader), so torchvision
is imported only to download: importing it costs over a second of every kernel's start.

A root you name is taken at its word: if it does not hold the dataset you get
a :class:`DatasetNotFoundError` naming it, not data from somewhere else. If
none of the sources works (no files, no network) the same error names each
way to provide the data. A damaged file (cut short by an interrupted download
or copy, or a broken ``.gz``) gives a :class:`CorruptDatasetError` naming the
file, its size, the size it should have and how to replace it.

Why tensors and not a ``Dataset`` of PIL images? Fashion-MNIST is 47 MB as
``uint8``: it fits in memory many times over. Normalising it once and slicing
whole mini-batches out of one tensor removes the per-image Python work that
otherwise dominates a CPU epoch of a small network.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

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

    torchvision_name: str  # the class in torchvision.datasets, and the folder name of its cache
    classes: tuple[str, ...]
    mean: float  # of the 60 000 training images, pixel values scaled to [0, 1]
    std: float
    system_dirs: tuple[Path, ...]  # directories where an OS package puts the .gz files
    system_package: str | None


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        torchvision_name="FashionMNIST",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mean=0.2860,
        std=0.3530,
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        system_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetInfo(
        torchvision_name="MNIST",
        classes=tuple(str(d) for d in range(10)),
        mean=0.1307,
        std=0.3081,
        system_dirs=(),
        system_package=None,
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files could not be found locally nor downloaded."""


class CorruptDatasetError(ValueError):
    """A dataset file is there but damaged (cut short, not an idx file, a broken .gz)."""


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


def raw_dir(root: str | Path, name: str) -> Path:
    """The folder torchvision reads the idx files from: ``<root>/<ClassName>/raw``."""
    return Path(root) / dataset_info(name).torchvision_name / "raw"


def has_raw_files(root: Path, name: str) -> bool:
    """True when ``root`` holds the four uncompressed idx files torchvision reads."""
    raw = raw_dir(root, name)
    return all((raw / f).is_file() for f in IDX_FILES)


def _where_to_get_it(name: str) -> str:
    """One sentence naming where a fresh copy of the dataset's files comes from."""
    from torchvision import datasets  # only when a message needs it (see the module's docstring)

    info = dataset_info(name)
    origin = f"torchvision downloads the .gz files from {getattr(datasets, info.torchvision_name).mirrors[0]}"
    if info.system_package:
        dirs = ", ".join(str(d) for d in info.system_dirs)
        origin = f"Debian's package {info.system_package} installs them in {dirs}; " + origin
    return f"Fresh copies: {origin}."


# ---------------------------------------------------------------------------
# Checking idx files: a damaged file should be named, not crash deep in torchvision.
# ---------------------------------------------------------------------------

IDX_UINT8 = 0x08  # the idx type code for unsigned bytes, the only type MNIST-style datasets use


def idx_expected_size(header: bytes) -> tuple[tuple[int, ...], int]:
    """The shape an idx file announces in its header, and the file size that follows from it.

    An idx file starts with a 4-byte *magic number*: two zero bytes, a type code
    (``0x08`` = unsigned bytes) and the number of dimensions ``d``; then ``d``
    big-endian 4-byte sizes (``60000, 28, 28`` for the training images); then
    the data, one byte per value. So a complete file has exactly
    ``4 + 4*d + 60000*28*28`` bytes: the header alone tells how big it must be.

    ``header`` is the start of the file (at least ``4 + 4*d`` bytes of it).

    Raises:
        ValueError: ``header`` is not the start of a uint8 idx file (the reason says why).
    """
    if header[:2] == b"\x1f\x8b":
        raise ValueError("it is still gzip-compressed (gunzip it)")
    if len(header) < 4:
        raise ValueError("that is too short for even the 4-byte magic number of an idx file")
    if header[:3] != bytes([0, 0, IDX_UINT8]) or not 1 <= header[3] <= 3:
        raise ValueError(f"it does not start with the magic number of a uint8 idx file "
                         f"(0x0000080d for d dimensions; found 0x{header[:4].hex()})")
    ndim = header[3]
    if len(header) < 4 + 4 * ndim:
        raise ValueError(f"that is too short for its {4 + 4 * ndim}-byte header")
    shape = struct.unpack(f">{ndim}I", header[4 : 4 + 4 * ndim])
    return shape, 4 + 4 * ndim + math.prod(shape)


def idx_problem(path: Path) -> str | None:
    """What is wrong with an idx file, or ``None`` when its size matches its header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(16)  # 4 + 4 * 3: the longest idx header
    try:
        shape, expected = idx_expected_size(header)
    except ValueError as reason:
        return f"it has {size:,} bytes, but {reason}"
    if size == expected:
        return None
    dims = " x ".join(str(n) for n in shape)
    return f"it has {size:,} bytes, but its header announces {dims} values, so it must have {expected:,} bytes"


def check_idx_file(path: Path, name: str = "fashion-mnist") -> None:
    """Check that an idx file is complete and undamaged (its size matches its header).

    Raises:
        CorruptDatasetError: naming the file, its size, the size expected and how to fix it.
    """
    problem = idx_problem(path)
    if problem is not None:
        raise CorruptDatasetError(
            f"The {name} file {path} is damaged: {problem}. Such a file was usually cut short "
            f"by an interrupted download, copy or unpack.\n"
            f"Delete it (or its whole folder {path.parent}) and run again: in torchvision's cache the "
            f"course then unpacks or downloads it anew; in a folder of your own (root= or "
            f"{DATA_ENV_VAR}) copy it again, or unpack it again from its .gz with `gunzip -k`. "
            f"{_where_to_get_it(name)}"
        )


def check_idx_files(root: Path, name: str = "fashion-mnist") -> None:
    """Check all four idx files under ``root`` (see :func:`check_idx_file`)."""
    for f in IDX_FILES:
        check_idx_file(raw_dir(root, name) / f, name)


# ---------------------------------------------------------------------------
# Finding the data.
# ---------------------------------------------------------------------------

def _gunzip(source: Path, target: Path) -> str | None:
    """Unpack ``source`` into ``target``; say what is wrong if the .gz or the idx file in it is damaged."""
    try:
        with gzip.open(source, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # cut short / garbled / not gzip at all
        return f"it cannot be unpacked ({error})"
    problem = idx_problem(target)
    return None if problem is None else f"the idx file inside is damaged: {problem}"


def _unpack_checked(source: Path, target: Path, name: str) -> None:
    """Gunzip ``source`` into ``target`` atomically, or raise an error naming ``source``.

    Each call writes its own half-written file (a fresh name from :mod:`tempfile`), so two notebooks unpacking
    the data at once on a fresh machine (``make seed-sweep`` with two jobs) write two copies and the last rename
    wins, both whole.
    """
    handle, name_of_partial = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".partial")
    os.close(handle)
    partial = Path(name_of_partial)
    problem = _gunzip(source, partial)
    if problem is not None:
        partial.unlink(missing_ok=True)
        package = dataset_info(name).system_package
        fix = f"reinstall it: `sudo apt-get install --reinstall {package}`" if package else "replace it"
        raise CorruptDatasetError(
            f"The compressed {name} file {source} ({source.stat().st_size:,} bytes) is damaged: {problem}.\n"
            f"Nothing was unpacked from it; {fix}. {_where_to_get_it(name)}"
        )
    partial.chmod(0o644)  # mkstemp makes it private; the data is not
    partial.replace(target)  # atomic: a reader never sees half a file


def _unpack_system_files(source: Path, root: Path, name: str) -> bool:
    """Gunzip an OS package's ``*.gz`` idx files into ``root/<Class>/raw``.

    The package's .gz files differ byte-for-byte from the ones torchvision
    downloads (so their checksums do not match); torchvision accepts the
    uncompressed files, so we unpack them.
    """
    if not all((source / f"{f}.gz").is_file() for f in IDX_FILES):
        return False
    raw = raw_dir(root, name)
    raw.mkdir(parents=True, exist_ok=True)
    for f in IDX_FILES:
        _unpack_checked(source / f"{f}.gz", raw / f, name)
    return True


def _download(name: str, root: Path) -> None:
    """Let torchvision download the dataset into ``root`` (needs the internet)."""
    from torchvision import datasets  # here only: the import is slow, and reading needs no torchvision

    torchvision_class = getattr(datasets, dataset_info(name).torchvision_name)
    torchvision_class(str(root), train=True, download=True)
    torchvision_class(str(root), train=False, download=True)


def _named_root(root: str | Path | None) -> tuple[Path, str] | None:
    """The data root you named, and how you named it; ``None`` when you named none.

    An empty ``COURSE_DATA_DIR`` counts as unset.
    """
    if root is not None:
        return Path(root).expanduser(), "root="
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR]).expanduser(), f"{DATA_ENV_VAR}="
    return None


def _check_named_root(root: Path, how: str, name: str) -> None:
    """A root you named must hold the dataset: the course never silently reads another copy.

    Raises:
        DatasetNotFoundError: naming the root, what is missing and what it should contain.
    """
    raw = raw_dir(root, name)
    missing = [f for f in IDX_FILES if not (raw / f).is_file()]
    if not missing:
        return
    if not root.is_dir():
        problem = "does not exist" if not root.exists() else "is not a folder"
    elif len(missing) == len(IDX_FILES):
        problem = f"holds no {name} dataset (nothing in {raw})"
    else:
        problem = f"lacks {', '.join(missing)} in {raw}"
    unset = "leave out root=" if how == "root=" else f"unset {DATA_ENV_VAR}"
    raise DatasetNotFoundError(
        f"The data root you named ({how}{root}) {problem}.\n"
        f"It should hold the four uncompressed idx files {', '.join(IDX_FILES)} in {raw}/"
        f"{_layout_hint(root, raw)}. {_where_to_get_it(name)}\n"
        f"Fix the path, or {unset} to let the course find the data itself "
        f"(torchvision's cache, Debian's package, a download)."
    )


def _layout_hint(root: Path, raw: Path) -> str:
    """A hint when the files are there but not as torchvision wants them (misplaced, or still .gz)."""
    for folder in (raw, root):
        if folder.is_dir() and any((folder / f"{f}.gz").is_file() for f in IDX_FILES):
            return f" (found .gz files in {folder}: unpack them with `gunzip -k *.gz` and put them there)"
    if root.is_dir() and any((root / f).is_file() for f in IDX_FILES):
        return f" (found idx files directly in {root}: move them there)"
    return ""


def resolve_data_root(
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    system_dirs: tuple[Path, ...] | None = None,
    allow_download: bool = True,
) -> Path:
    """Find (or fetch) a dataset and return the root torchvision should read it from.

    A root you name (``root`` or ``COURSE_DATA_DIR``) is taken at its word: if
    it does not hold the dataset that is an error, never a quiet switch to some
    other copy -- you would not know which data you trained on. Otherwise the
    torchvision cache, the OS package and a download are tried in turn; the
    last two write into the cache. The files found are checked (see
    :func:`check_idx_file`) before their root is returned.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        root: your own data directory; ``COURSE_DATA_DIR`` is used when this is ``None``.
        cache_dir: torchvision cache to look in and to unpack/download into
            (default: :func:`default_cache_dir`).
        system_dirs: where an OS package keeps the .gz files (default: the dataset's own).
        allow_download: try torchvision's download as the last resort.

    Raises:
        DatasetNotFoundError: the named root lacks the dataset, or nothing was found
            and no download was possible; the message says what to provide where.
        CorruptDatasetError: a file is damaged; the message names it and the fix.
    """
    named = _named_root(root)
    if named is not None:
        _check_named_root(*named, name)
        found = named[0]
    else:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        sources = dataset_info(name).system_dirs if system_dirs is None else system_dirs
        found = _find_or_fetch(name, cache, sources, allow_download)
    check_idx_files(found, name)
    return found


def _find_or_fetch(name: str, cache: Path, sources: tuple[Path, ...], allow_download: bool) -> Path:
    """The torchvision cache, else the OS package unpacked into it, else a download into it."""
    if has_raw_files(cache, name):
        return cache
    for source in sources:
        if _unpack_system_files(Path(source), cache, name):
            return cache
    download_error: Exception | None = None
    if allow_download:
        try:
            _download(name, cache)
            if has_raw_files(cache, name):
                return cache
        except Exception as error:  # noqa: BLE001 - any failure means "offline": report all options
            download_error = error
    raise DatasetNotFoundError(_not_found_message(name, cache, sources, download_error))


def _not_found_message(name: str, cache: Path, sources: tuple[Path, ...], download_error: Exception | None) -> str:
    """Every way to provide the dataset, and where each was looked for."""
    info = dataset_info(name)
    ways = [
        f"  1. put the four uncompressed idx files ({', '.join(IDX_FILES)}) in {raw_dir('<root>', name)}/ "
        f"and pass root=<root> or set {DATA_ENV_VAR}=<root>",
        f"  2. place them in torchvision's cache {raw_dir(cache, name)}",
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
    return f"Could not find the {name} dataset. Provide it one of these ways:\n" + "\n".join(ways)


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

    def key(self) -> dict[str, object]:
        """What identifies these splits in a cache key: the dataset, the split sizes and the split seed."""
        return {"dataset": self.name, "sizes": self.sizes(), "split_seed": self.seed}


def _load_raw(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check the idx files under ``root``, then read them as uint8 tensors.

    Reading is memoised per file version (path, size, modification time):
    loading the same files again is free, while replaced files are read anew
    and a damaged file fails every time (an error is never remembered).
    """
    check_idx_files(Path(root), name)
    stats = [(raw_dir(root, name) / f).stat() for f in IDX_FILES]
    return _read_raw(name, root, tuple((s.st_size, s.st_mtime_ns) for s in stats))


@lru_cache(maxsize=4)
def _read_raw(
    name: str, root: str, version: tuple[tuple[int, int], ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four idx files as tensors: images uint8 (N, 28, 28), labels int64; ``version`` only keys the cache."""
    raw = raw_dir(root, name)
    images, labels, test_images, test_labels = (read_idx(raw / f) for f in IDX_FILES)
    return images, labels.long(), test_images, test_labels.long()


def read_idx(path: Path) -> torch.Tensor:
    """An idx file as a uint8 tensor of the shape its header announces (see :func:`idx_expected_size`).

    Check the file first (:func:`check_idx_file`): this reads what is there.
    """
    content = path.read_bytes()
    shape, _ = idx_expected_size(content[:16])
    return torch.frombuffer(bytearray(content[4 + 4 * len(shape):]), dtype=torch.uint8).reshape(shape)


def normalise(images: torch.Tensor, name: str = "fashion-mnist") -> torch.Tensor:
    """``uint8`` images (N, 28, 28) -> float32 (N, 1, 28, 28), zero mean and unit std."""
    info = dataset_info(name)
    return ((images.float() / 255.0 - info.mean) / info.std).unsqueeze(1)


def load_splits(
    profile: Profile,
    name: str = "fashion-mnist",
    root: str | Path | None = None,
    seed: int = 0,
    train_size: int | None = None,
) -> DataSplits:
    """Load a dataset, normalise it and split it as the profile says.

    ``profile.val_size`` images of the official training set become the
    validation split (the same images for the same seed and size); the next
    ``profile.train_size`` (all the rest when ``None``) are the training split.
    ``train_size`` overrides the profile's for an experiment that trains many
    networks on fewer images; the validation and test splits stay the same.
    """
    if train_size is not None:
        profile = replace(profile, train_size=train_size)
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
