"""A mask that learns which k of n to keep: the DPP parametrization, at three granularities and in tiles.

``weight = original * mask``, where ``mask`` is drawn at every forward pass
from learned logits ``phi`` with exactly ``k`` ones in every *row*:

================  =====================================  ================================  =====================
granularity       one row per                            a row chooses among               mask entry covers
================  =====================================  ================================  =====================
``"weight"``      output neuron / filter                 its fan-in weights                one weight
``"kernel"``      filter of a convolution                its input channels' kernels       one k_h x k_w kernel
``"feature_map"`` layer                                  its output neurons / filters      a whole filter
================  =====================================  ================================  =====================

With ``tile=M`` (weight granularity) each row's fan-in is cut into groups of M
consecutive weights and ``k`` is kept *per group*: M = 4, k = 2 is the 2:4
pattern of sparse tensor cores, learned.

A kernel mask of shape (filters, channels) is expanded over the kernel's
height and width by broadcasting, never reshaped: a reshape would scatter a
filter's k kernels over other filters (the bug of the reference code).

The logits are a parameter of the parametrization, so ``model.parameters()``
holds them (:class:`~course_lib.dpp.pruner.DPP` gives them their own optimizer
group). :meth:`DPPMask.hard_mask` is the deterministic top-k of the logits:
the mask the network keeps once training ends.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from course_lib.dpp.sampler import sample_k_hot, top_k_mask
from course_lib.masks import MaskParametrization
from course_lib.profiles import shifted_seed

Granularity = Literal["weight", "kernel", "feature_map"]


def rows_layout(weight_shape: torch.Size | tuple[int, ...], granularity: Granularity,
                tile: int | None = None) -> tuple[int, ...]:
    """The shape of the logits for a weight: ``(rows, n)``, or ``(rows, groups, M)`` with tiles."""
    shape = tuple(weight_shape)
    if granularity == "weight":
        fan_in = math.prod(shape[1:])
        if tile is None:
            return (shape[0], fan_in)
        if tile < 1 or fan_in % tile:
            raise ValueError(f"A tile of {tile} must divide the fan-in {fan_in} of a weight of shape {shape}.")
        return (shape[0], fan_in // tile, tile)
    if tile is not None:
        raise ValueError("Tiles split a row of single weights: use them with granularity='weight'.")
    if granularity == "kernel":
        if len(shape) != 4:
            raise ValueError(f"Kernel granularity needs a convolution weight (4 dimensions), got shape {shape}.")
        return (shape[0], shape[1])
    if granularity == "feature_map":
        return (1, shape[0])
    raise ValueError(f"granularity must be 'weight', 'kernel' or 'feature_map', got {granularity!r}.")


class DPPMask(MaskParametrization):
    """``weight = original * mask`` with a k-of-n mask sampled from the learned ``logits`` of every row.

    Args:
        weight_shape: the shape of the weight it masks.
        k: entries kept per row (per group of ``tile`` with tiles).
        granularity: ``"weight"``, ``"kernel"`` or ``"feature_map"`` (see the module's table).
        tile: split each row of single weights into groups of this size (N:M sparsity, N = k).
        init_std: the logits start as N(0, init_std^2) (0.5 in the authors' code).
        seed: seeds the initial logits and the Gumbel noise.

    Attributes:
        temperature: the relaxation's temperature (set by the training hook).
        sampling: draw a new mask at each forward pass (training); when False,
            the forward pass uses the deterministic top-k of the logits.
    """

    def __init__(self, weight_shape: torch.Size | tuple[int, ...], k: int, granularity: Granularity = "weight",
                 tile: int | None = None, init_std: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.weight_shape, self.granularity, self.tile = tuple(weight_shape), granularity, tile
        layout = rows_layout(weight_shape, granularity, tile)
        if not 1 <= k <= layout[-1]:
            raise ValueError(f"k must be between 1 and the {layout[-1]} entries of a row, got {k}.")
        self.k = k
        self.generator = torch.Generator().manual_seed(shifted_seed(seed))
        self.logits = nn.Parameter(init_std * torch.randn(layout, generator=self.generator))
        self.temperature = 1.0
        self.sampling = True
        self.last_rows: torch.Tensor | None = None  # the mask of the latest forward pass (for SharedUnitMask)

    @property
    def capture_dense_grad(self) -> bool:
        """True while masks are sampled: the logits' gradient needs ``dL/d(masked weight)`` at *every* entry,
        so a DPP step computes a dense weight gradient (what FLOP counters such as
        :class:`~course_lib.sparse.tracking.MaskTracker` read from this attribute)."""
        return self.sampling and torch.is_grad_enabled()

    def expand(self, rows: torch.Tensor) -> torch.Tensor:
        """A mask of the logits' layout, as a mask of the weight's shape (broadcast, never reshaped across rows)."""
        shape = self.weight_shape
        if self.granularity == "weight":
            return rows.reshape(shape)  # (rows, n) or (rows, groups, M): row-major, as the weight is flattened
        if self.granularity == "kernel":
            return rows[:, :, None, None].expand(shape)
        return rows.reshape(shape[0], *([1] * (len(shape) - 1))).expand(shape)  # one layer row -> whole filters

    def row_mask(self) -> torch.Tensor:
        """The mask in the logits' layout: a fresh sample while ``sampling``, otherwise the top-k of the logits."""
        if self.sampling and torch.is_grad_enabled():
            return sample_k_hot(self.logits, self.k, self.temperature, self.generator)
        return top_k_mask(self.logits.detach(), self.k)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        self.last_rows = self.row_mask()
        return original * self.expand(self.last_rows).to(original.dtype)

    def hard_mask(self) -> torch.Tensor:
        return self.expand(top_k_mask(self.logits.detach(), self.k))


class SharedUnitMask(nn.Module):
    """Switch a per-unit parameter (a bias, a BatchNorm scale or shift) on and off with a feature-map mask.

    A filter switched off by its convolution's mask still has an output
    after the BatchNorm that follows: a zero channel normalised to zero, then
    shifted by beta - and after the ReLU, ``relu(beta)`` flows on as if the
    filter were there. So while feature-map masks are sampled, the unit's bias
    and its BatchNorm's scale and shift must be switched off with it, in the
    same forward pass. This parametrization multiplies its parameter by the
    units of the mask its *leader* drew last (the layer's weight is accessed,
    and its mask drawn, before the BatchNorm runs).
    """

    def __init__(self, leader: DPPMask) -> None:
        super().__init__()
        if leader.granularity != "feature_map":
            raise ValueError("A SharedUnitMask follows a feature-map DPPMask (one that keeps whole units).")
        self._leader = (leader,)  # a tuple: not a submodule, so the logits are not registered twice

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        leader = self._leader[0]
        rows = leader.last_rows if leader.last_rows is not None else leader.row_mask()
        return original * rows.reshape(-1).to(original.dtype)


def is_n_m_sparse(mask: torch.Tensor, n: int, m: int) -> bool:
    """Does every group of ``m`` consecutive weights of every row (output unit) hold at most ``n`` non-zeros?

    The N:M pattern of sparse tensor cores (2:4 on NVIDIA Ampere and later):
    groups run along each row's flattened fan-in, starting at its first weight.

    Raises:
        ValueError: if the fan-in is not a multiple of ``m`` (the pattern is undefined).
    """
    rows = mask.reshape(mask.shape[0], -1)
    if not 0 <= n <= m or rows.shape[1] % m:
        raise ValueError(f"need 0 <= n <= m and a fan-in that is a multiple of m; got n={n}, m={m}, "
                         f"fan-in {rows.shape[1]}.")
    return bool(((rows != 0).reshape(rows.shape[0], -1, m).sum(-1) <= n).all())
