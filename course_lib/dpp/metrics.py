"""How sure is a layer of its mask, and how different are its rows? The course's own definitions.

The DPP paper measures each layer's mask *confidence* and *diversity* with
information-theoretic metrics of its own; the course does not reproduce them.
The authors' released code computes only the entropy of softmax(logits) per
row (a regulariser), the distribution of a *single* pick: a row settled on a
fixed set of k entries still has entropy log k there. The course's metrics,
documented here and in chapter 7, are built on the k-of-n inclusion
probabilities instead.

Both start from a row's **inclusion probabilities** ``pi_i``: the chance that
entry i is among the row's k Gumbel-top-k picks. They lie in [0, 1] and sum to
k, so ``q = pi / k`` is a distribution over the n entries ("a kept entry,
drawn at random"), and its entropy lies between ``log k`` (the same k entries
every time: a decided mask) and ``log n`` (every entry equally likely)::

    confidence_r = (log n - H(q_r)) / (log n - log k)          in [0, 1]

A layer's confidence is the mean over its R rows. Diversity asks whether the
rows are sure of the *same* entries. What a row knows about "which entry" is
``log n - H(q_r)``; averaged over rows it splits exactly into two parts::

    mean_r (log n - H(q_r)) =  I(row; kept entry)  +  KL(mean_r q_r || uniform)
                               row-specific           shared by all rows
    I(row; kept entry) = H(mean_r q_r) - mean_r H(q_r)

    diversity = I / (I + KL)                                    in [0, 1]

Diversity is the row-specific share: 1 when the rows' preferences cancel out
on average (each row its own entries), 0 when every row prefers the same
ones. It is independent of how sure the rows are, so it can be read beside
confidence. It is ``nan`` where it means nothing: a layer with a single row
(the feature-map granularity) or rows with no preference at all.

The exact inclusion probabilities sum over n!/(n-k)! orders of picking, out
of reach for a row of 784. :func:`inclusion_probabilities` uses Rosen's
approximation for sampling one after another with probabilities proportional
to weights ``w_i = exp(phi_i)`` (which is what Gumbel-top-k does)::

    pi_i ~ 1 - exp(-w_i * t),   with t chosen so that the pi_i sum to k

Tests check it against exact enumeration on short rows and against sampling
on long ones (a few hundredths at worst). Rows short enough to enumerate (at
most ``EXACT_ORDERS`` orders of picking, e.g. the groups of 4 of 2:4 tiles)
get the exact values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

EXACT_ORDERS = 1_000  # rows with at most this many ordered k-tuples are enumerated exactly


def _rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.detach().reshape(-1, logits.shape[-1]).double()  # tiles: every group of M is a row of its own


def inclusion_probabilities(logits: torch.Tensor, k: int, iterations: int = 40) -> torch.Tensor:
    """Approximate P(entry i is among a row's Gumbel-top-k picks), for every row (last dimension) at once.

    Rosen's formula ``1 - exp(-w_i t)`` with ``w = exp(logits - max)`` and
    ``t`` found by bisection (in log space) so that every row sums to ``k``.
    For one short row, :func:`course_lib.dpp.sampler.inclusion_probabilities`
    computes the exact values.
    """
    n = logits.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the row length {n}, got {k}.")
    rows = _rows(logits)
    weights = torch.exp(rows - rows.max(dim=-1, keepdim=True).values)  # the largest is 1
    low = torch.full((rows.shape[0], 1), -30.0, dtype=torch.double)  # log t: the sum rises with t
    high = torch.full_like(low, 700.0)
    for _ in range(iterations):
        middle = (low + high) / 2
        short = (-torch.expm1(-weights * middle.exp())).sum(dim=-1, keepdim=True) < k
        low, high = torch.where(short, middle, low), torch.where(short, high, middle)
    return (-torch.expm1(-weights * ((low + high) / 2).exp())).reshape(logits.shape)


def _exact_inclusion(rows: torch.Tensor, k: int) -> torch.Tensor:
    """Plackett-Luce inclusion probabilities of every row at once, by summing over every order of k picks."""
    weights = torch.exp(rows - rows.max(dim=-1, keepdim=True).values)
    inclusion = torch.zeros_like(weights)
    for picks in itertools.permutations(range(rows.shape[-1]), k):
        probability, remaining = torch.ones_like(weights[:, 0]), weights.sum(dim=-1)
        for i in picks:
            probability = probability * weights[:, i] / remaining
            remaining = remaining - weights[:, i]
        inclusion[:, list(picks)] += probability[:, None]
    return inclusion


def _entropies(q: torch.Tensor) -> torch.Tensor:
    return -(q * torch.log(q.clamp_min(1e-300))).sum(dim=-1)


def _kept_entry_distributions(logits: torch.Tensor, k: int) -> torch.Tensor:
    rows = _rows(logits)
    n = rows.shape[-1]
    if not 1 <= k < n:
        raise ValueError(f"confidence and diversity need 1 <= k < n (a row of {n} keeping {k} has no "
                         "choice to be sure of).")
    exact = math.perm(n, k) <= EXACT_ORDERS
    return (_exact_inclusion(rows, k) if exact else inclusion_probabilities(rows, k)) / k  # q_r: a kept entry of row r, drawn at random


def _confidence(q: torch.Tensor, k: int) -> float:
    n = q.shape[-1]
    per_row = (math.log(n) - _entropies(q)) / (math.log(n) - math.log(k))
    return float(per_row.clamp(0.0, 1.0).mean())  # the clamp only absorbs rounding


def _diversity(q: torch.Tensor) -> float:
    count, n = q.shape
    known = math.log(n) - float(_entropies(q).mean())  # = I + KL, what the rows know on average
    if count == 1 or known < 1e-9:
        return math.nan
    shared = math.log(n) - float(_entropies(q.mean(dim=0)))  # KL(mean q || uniform)
    return min(max(1.0 - shared / known, 0.0), 1.0)


def confidence(logits: torch.Tensor, k: int) -> float:
    """Mean over rows of ``(log n - H(pi / k)) / (log n - log k)``: 0 = no preference, 1 = the same k every time."""
    return _confidence(_kept_entry_distributions(logits, k), k)


def diversity(logits: torch.Tensor, k: int) -> float:
    """The row-specific share of a layer's information about its mask: ``I / (I + KL)`` (see the module).

    1 = every row prefers its own entries, 0 = all rows prefer the same ones;
    ``nan`` for a single row (feature-map granularity) or rows without any preference.
    """
    return _diversity(_kept_entry_distributions(logits, k))


def confidence_and_diversity(logits: torch.Tensor, k: int) -> tuple[float, float]:
    """Both metrics of one layer, computing its inclusion probabilities once."""
    q = _kept_entry_distributions(logits, k)
    return _confidence(q, k), _diversity(q)


def decided_after(trace: Sequence[Mapping[str, Any]], share: float = 0.9) -> dict[str, tuple[float, float]]:
    """When each layer's mask was decided: ``layer -> (share of training, temperature then)``.

    ``trace`` is a run's records (:attr:`course_lib.dpp.pruner.DPP.trace`: ``step``, ``layer``,
    ``confidence``, ``temperature``). A layer counts as decided at the first record whose confidence reaches
    ``share`` of the layer's final confidence; the share of training is that step over the last recorded step.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}.")
    by_layer: dict[str, list[Mapping[str, Any]]] = {}
    for record in sorted(trace, key=lambda r: r["step"]):
        by_layer.setdefault(str(record["layer"]), []).append(record)
    if not by_layer:
        raise ValueError("the trace is empty: was the DPP hook created with record_every?")
    last = max(r["step"] for r in trace)
    result = {}
    for layer, records in by_layer.items():
        target = share * records[-1]["confidence"]
        first = next(r for r in records if r["confidence"] >= target)
        result[layer] = (first["step"] / last, float(first["temperature"]))
    return result
