"""How sure is a layer of its mask, and how different are its rows? The course's own definitions.

The DPP paper measures each layer's mask *confidence* and *diversity* with
information-theoretic metrics; its exact formulas were not available to us,
so the course defines its own, from each row's distribution of the first pick
``p_r = softmax(phi_r)`` over its n entries (the row's preference, exact and
cheap; Gumbel-top-k picks its k entries one after another from it):

* **confidence** of a row: how far ``p_r`` is from "no preference" (uniform
  over n, entropy ``log n``) towards "exactly k chosen" (uniform over k,
  entropy ``log k``)::

      confidence_r = (log n - H(p_r)) / (log n - log k), clipped to [0, 1]

  A layer's confidence is the mean over its rows. It rises as the logits
  separate the kept entries from the rest.
* **diversity** of a layer: do its rows choose *different* entries? The
  mutual information between "which row" (uniform over the R rows) and "which
  entry the row picks" is ``H(mean_r p_r) - mean_r H(p_r)``: 0 when every
  row has the same preference, largest when confident rows choose disjoint
  sets. We divide by its largest possible value for confident rows,
  ``min(log R, log(n / k))``, so that it lies in [0, 1]. One row (the
  feature-map granularity) has no diversity to speak of: 0.
"""

from __future__ import annotations

import math

import torch

from course_lib.dpp.pruner import row_entropy


def _rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.detach().reshape(-1, logits.shape[-1]).double()  # tiles: every group is a row


def confidence(logits: torch.Tensor, k: int) -> float:
    """Mean over rows of ``(log n - H(softmax(row))) / (log n - log k)``, clipped to [0, 1]."""
    rows = _rows(logits)
    n = rows.shape[-1]
    if not 1 <= k < n:
        raise ValueError(f"confidence needs 1 <= k < n (a row of {n} keeping {k} has no choice to be sure of).")
    per_row = (math.log(n) - row_entropy(rows)) / (math.log(n) - math.log(k))
    return float(per_row.clamp(0.0, 1.0).mean())


def diversity(logits: torch.Tensor, k: int) -> float:
    """Mutual information between row and first pick, divided by ``min(log R, log(n / k))``; 0 for one row."""
    rows = _rows(logits)
    count, n = rows.shape
    if count == 1:
        return 0.0
    p = torch.softmax(rows, dim=-1)
    mean = p.mean(dim=0)
    information = float(-(mean * torch.log(mean.clamp_min(1e-300))).sum() - row_entropy(rows).mean())
    return min(max(information / min(math.log(count), math.log(n / k)), 0.0), 1.0)
