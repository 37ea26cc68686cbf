"""Tiny fake MNIST-style idx files, for testing data resolution without the real dataset."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 120, 30


def _idx_images(n: int, offset: int) -> bytes:
    """idx3 file whose image k has every pixel equal to (k + offset) % 256: its index is readable back."""
    pixels = np.repeat(((np.arange(n) + offset) % 256).astype(np.uint8), 28 * 28)
    return struct.pack(">IIII", 0x803, n, 28, 28) + pixels.tobytes()


def _idx_labels(n: int) -> bytes:
    return struct.pack(">II", 0x801, n) + (np.arange(n) % 10).astype(np.uint8).tobytes()


def write_fake_idx(folder: Path, compressed: bool) -> Path:
    """Write a tiny MNIST-style dataset (120 train, 30 test images) as idx files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "train-images-idx3-ubyte": _idx_images(N_TRAIN, 0),
        "train-labels-idx1-ubyte": _idx_labels(N_TRAIN),
        "t10k-images-idx3-ubyte": _idx_images(N_TEST, 200),
        "t10k-labels-idx1-ubyte": _idx_labels(N_TEST),
    }
    for name, blob in contents.items():
        if compressed:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(blob)
        else:
            (folder / name).write_bytes(blob)
    return folder
