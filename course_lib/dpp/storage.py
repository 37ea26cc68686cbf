"""What a k-of-n network costs to store: bits for the values plus bits that say *which* k of n.

A sparse layer is stored as its kept values and an index. The index is
what regular structure makes cheap:

===================  ===================================================  =======================
index                bits                                                 needs
===================  ===================================================  =======================
CSR                  32 (or 16) per kept value + 32 per row (start)        any mask
bitmap               n per row (one bit per entry)                        any mask
k-of-n code          ceil(log2 C(n, k)) per row: the number of the subset  exactly k in every row
N:M positions        ceil(log2 M) per kept value (2 bits for 2:4)          at most N per group of M
===================  ===================================================  =======================

The k-of-n code is the least a fixed-length code per row can spend when
every row keeps exactly k of n (there are C(n, k) possible rows, and
ceil(log2 C(n, k)) bits tell them apart; enumerative coding reaches it).
Coding whole layers at once, or entropy coding learned preferences, can go
lower. With exactly k per row the rows need
no start pointers either: row r starts at value r * k.

Values take 32 bits (float32) or ``value_bits`` after quantization, plus one
float32 scale per quantized tensor. Layers left dense are stored as float32
in every format; biases (a few hundred numbers) are left out of the count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch

from course_lib.dpp.masks import is_n_m_sparse

FLOAT_BITS = 32
INDEX_BITS = 32  # CSR column indices and row pointers as int32
SHORT_INDEX_BITS = 16  # column indices as int16: enough for rows of up to 65 536 entries


def k_of_n_code_bits(n: int, k: int) -> int:
    """``ceil(log2 C(n, k))``: the bits that name one of the C(n, k) ways to keep k of n."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}.")
    return math.ceil(math.log2(math.comb(n, k))) if math.comb(n, k) > 1 else 0


def _kept_per_row(mask: torch.Tensor) -> torch.Tensor:
    return (mask.reshape(mask.shape[0], -1) != 0).sum(dim=1)


def storage_table(masks: Mapping[str, torch.Tensor], dense_weights: int = 0, value_bits: int = 8,
                  n_m: tuple[int, int] | None = None) -> pd.DataFrame:
    """Bits, kibibytes and compression ratio of a pruned network's weights in several formats.

    Args:
        masks: the weight masks of the pruned layers, by name (a row = an output unit).
        dense_weights: weights of the layers left dense (stored as float32 in every format).
        value_bits: the width of quantized values (8 for int8).
        n_m: also price the N:M position format, e.g. ``(2, 4)`` (the masks must be N:M sparse).
    """
    if not masks:
        raise ValueError("storage_table needs the masks of at least one pruned layer.")
    total = dense_weights + sum(m.numel() for m in masks.values())
    kept = sum(int((m != 0).sum()) for m in masks.values())
    rows = sum(m.shape[0] for m in masks.values())
    dense_part = FLOAT_BITS * dense_weights
    pointers = INDEX_BITS * (rows + len(masks))  # CSR's row starts, one more than the rows per layer
    bitmap = sum(m[0].numel() * m.shape[0] for m in masks.values())
    scales = FLOAT_BITS * len(masks)  # one float32 scale per quantized layer
    formats = {
        "dense, float32": FLOAT_BITS * total,
        "CSR, float32 values + int32 indices": dense_part + (FLOAT_BITS + INDEX_BITS) * kept + pointers,
        "bitmap, float32 values": dense_part + FLOAT_BITS * kept + bitmap,
        f"CSR, {value_bits}-bit values + int32 indices": dense_part + (value_bits + INDEX_BITS) * kept + pointers + scales,
        f"CSR, {value_bits}-bit values + int16 indices": dense_part + (value_bits + SHORT_INDEX_BITS) * kept + pointers
        + scales,
        f"bitmap, {value_bits}-bit values": dense_part + value_bits * kept + bitmap + scales,
    }
    counts = {name: _kept_per_row(m) for name, m in masks.items()}
    if all(bool((c == c[0]).all()) for c in counts.values()):  # exactly k in every row of each layer
        code = sum(m.shape[0] * k_of_n_code_bits(m[0].numel(), int(counts[name][0])) for name, m in masks.items())
        formats["k-of-n code, float32 values"] = dense_part + FLOAT_BITS * kept + code
        formats[f"k-of-n code, {value_bits}-bit values"] = dense_part + value_bits * kept + code + scales
    if n_m is not None:
        n, m = n_m
        if not all(is_n_m_sparse(mask, n, m) for mask in masks.values()):
            raise ValueError(f"The masks are not all {n}:{m} sparse: the {n}:{m} format cannot store them.")
        positions = math.ceil(math.log2(m))
        formats[f"{n}:{m} positions, {value_bits}-bit values"] = dense_part + (value_bits + positions) * kept + scales
    table = pd.DataFrame({"bits": pd.Series(formats)})
    table["KiB"] = table["bits"] / 8 / 1024
    table["compression (x dense float32)"] = formats["dense, float32"] / table["bits"]
    return table
