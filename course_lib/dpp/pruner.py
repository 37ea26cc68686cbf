"""DPP as a training hook: attach learned k-of-n masks, anneal the temperature, regularise, freeze.

One :class:`DPP` hook does the whole method inside the course's one training loop:

* ``on_start``: a :class:`~course_lib.dpp.masks.DPPMask` on every prunable
  weight, keeping ``k = round((1 - sparsity) * n)`` of every row of n;
* ``param_groups``: the logits get their own learning rate;
* ``before_forward``: the temperature follows a linear schedule from
  ``temperatures[0]`` to ``temperatures[1]`` over the run, driven by the
  fraction of training done (clamped to [0, 1], so it can never run past its
  end - the reference code's step counter could go negative);
* ``extra_loss``: ``entropy * mean over rows of H(softmax(logits_row))``,
  the softmax taken over each row's n entries (the reference code took it over
  the wrong axis), which pushes every row towards a confident choice.

The weights are *not* re-zeroed while the masks are sampled: a weight left out
of this step's sample may be in the next one. After training,
:func:`freeze` replaces every learned mask by its deterministic top-k as an
ordinary fixed mask, so fine-tuning, cost tables and chapter 2's surgery work
on the result as on any pruned network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib.dpp.masks import DPPMask, Granularity, rows_layout
from course_lib.masks import apply_masks, mask_layers, remove_masks
from course_lib.pruning.selection import check_sparsity, prunable_weights, unit_masks
from course_lib.training.hooks import Hook, TrainContext


def keep_per_row(sparsity: float, n: int) -> int:
    """k of n for a sparsity: ``round((1 - sparsity) * n)``, at least 1."""
    check_sparsity(sparsity)
    return max(1, round((1.0 - sparsity) * n))


def dpp_masks(model: nn.Module) -> dict[str, DPPMask]:
    """The learned masks of ``model``, by weight name."""
    return {name: m for name, m in mask_layers(model).items() if isinstance(m, DPPMask)}


class DPP(Hook):
    """Dynamic probabilistic pruning of every prunable weight (except ``exclude``) during training.

    Args:
        sparsity: the share of every row removed (exactly, up to rounding k).
        granularity: ``"weight"``, ``"kernel"`` or ``"feature_map"``.
        tile: groups of this many weights per row, k kept in each (weight granularity).
        temperatures: the relaxation's temperature at the start and at the end (linear in between).
        logits_lr: the learning rate of the logits' parameter group.
        entropy: strength of the entropy regulariser on the rows' softmax(logits).
        exclude: layers left dense (e.g. the classifier for feature-map granularity).
        seed: seeds the logits and the noise.
    """

    def __init__(self, sparsity: float, granularity: Granularity = "weight", tile: int | None = None,
                 temperatures: tuple[float, float] = (5.0, 0.5), logits_lr: float = 1e-2, entropy: float = 0.0,
                 exclude: Sequence[str] = (), seed: int = 0) -> None:
        check_sparsity(sparsity)
        if min(temperatures) <= 0:
            raise ValueError(f"temperatures must be positive, got {temperatures}.")
        if logits_lr <= 0 or entropy < 0:
            raise ValueError(f"need logits_lr > 0 and entropy >= 0, got {logits_lr} and {entropy}.")
        self.sparsity, self.granularity, self.tile = sparsity, granularity, tile
        self.temperatures, self.logits_lr, self.entropy = temperatures, logits_lr, entropy
        self.exclude, self.seed = tuple(exclude), seed
        self.masks: list[DPPMask] = []  # the masks this hook attached (set in on_start)

    def on_start(self, ctx: TrainContext) -> None:
        self.masks = []
        for i, (name, layer) in enumerate(prunable_weights(ctx.model, self.exclude).items()):
            layout = rows_layout(layer.weight.shape, self.granularity, self.tile)
            mask = DPPMask(layer.weight.shape, keep_per_row(self.sparsity, layout[-1]), self.granularity, self.tile,
                           seed=self.seed * 1000 + i).to(layer.weight.device)
            parametrize.register_parametrization(layer, "weight", mask)
            self.masks.append(mask)

    def param_groups(self, ctx: TrainContext) -> list[dict[str, Any]]:
        return [{"params": [m.logits for m in self.masks], "lr": self.logits_lr, "weight_decay": 0.0}]

    def temperature(self, progress: float) -> float:
        """The temperature after ``progress`` (a fraction in [0, 1]) of training."""
        start, end = self.temperatures
        return start + (end - start) * min(max(progress, 0.0), 1.0)

    def before_forward(self, ctx: TrainContext) -> None:
        for mask in self.masks:
            mask.temperature = self.temperature(ctx.progress)

    def extra_loss(self, ctx: TrainContext) -> torch.Tensor | None:
        if self.entropy == 0.0:
            return None
        return self.entropy * torch.stack([row_entropy(m.logits).mean() for m in self.masks]).mean()


def row_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy (nats) of softmax over the last dimension, one value per row."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


@torch.no_grad()
def freeze(model: nn.Module) -> None:
    """Replace every learned mask by its deterministic top-k, as a fixed mask (in place).

    Feature-map masks remove whole units: their bias and the BatchNorm that
    follows go too (:func:`~course_lib.pruning.selection.unit_masks`), so
    chapter 2's :func:`~course_lib.pruning.surgery.shrink` can cut them out.
    """
    learned = dpp_masks(model)
    if not learned:
        raise ValueError("The model carries no DPP masks: train it with the DPP hook first.")
    if len(mask_layers(model)) != len(learned):
        raise ValueError(f"{sorted(set(mask_layers(model)) - set(learned))} carry other masks as well; "
                         "DPP prunes a network on its own.")
    units = {name.removesuffix(".weight"): m.hard_mask().flatten(1).any(dim=1)
             for name, m in learned.items() if m.granularity == "feature_map"}
    fixed = {name: m.hard_mask().clone() for name, m in learned.items() if m.granularity != "feature_map"}
    remove_masks(model)  # each weight keeps its values under its top-k, zeros elsewhere
    apply_masks(model, fixed)
    if units:
        apply_masks(model, unit_masks(model, units))
