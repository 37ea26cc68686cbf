"""Network slimming (Liu et al. 2017): learn which channels to remove through BatchNorm's scales.

Every channel of a convolution followed by BatchNorm is multiplied by its BN
scale gamma. Training with an L1 penalty ``lambda * sum |gamma|`` pushes the
scales of unneeded channels towards zero; channels whose ``|gamma|`` ends
below one global threshold are then removed. The penalty's subgradient,
``lambda * sign(gamma)``, is added to each scale's gradient between
``backward`` and the optimizer step - a training hook's ``after_backward``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import nn

from course_lib.masks import Masks, apply_masks
from course_lib.pruning.selection import BATCHNORMS, following_batchnorm, unit_masks
from course_lib.pruning.surgery import shrink
from course_lib.masks import check_sparsity, trainable_tensor
from course_lib.training.hooks import Hook, TrainContext

class BatchNormL1(Hook):
    """The sparsity term of network slimming: adds ``strength * sign(gamma)`` to every BN scale's gradient.

    Use it with SGD, as the paper does. Adam divides every gradient by its own
    running size, so the penalty would push each scale at about one learning
    rate per step whatever ``strength`` is, instead of weighing the penalty
    against how much the loss needs that channel.

    Example::

        train(model, data, config, hooks=[BatchNormL1(3e-2)])
    """

    def __init__(self, strength: float) -> None:
        if strength < 0:
            raise ValueError(f"strength (lambda) must be zero or positive, got {strength}.")
        self.strength = strength

    @staticmethod
    def scales(model: nn.Module) -> list[torch.Tensor]:
        """Every BatchNorm scale gamma of ``model`` (the parameters the penalty acts on)."""
        return [trainable_tensor(layer, "weight") for layer in model.modules()
                if isinstance(layer, BATCHNORMS) and layer.affine]

    @torch.no_grad()
    def after_backward(self, ctx: TrainContext) -> None:
        for gamma in self.scales(ctx.model):
            if gamma.grad is not None:
                gamma.grad.add_(self.strength * torch.sign(gamma))


def batchnorm_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """``|gamma|`` of the BatchNorm after each layer, keyed by the layer's name (on the CPU).

    ``{"net.conv1": tensor([0.93, 0.02, ...]), ...}``: one number per channel
    of that layer, the factor its output is multiplied by after normalisation.
    Which BatchNorm belongs to a layer is :func:`~course_lib.pruning.selection.following_batchnorm`'s rule.
    """
    modules = dict(model.named_modules())
    return {layer: trainable_tensor(modules[bn], "weight").detach().abs().cpu()
            for layer, bn in following_batchnorm(model).items() if modules[bn].affine}


def global_threshold(scales: Mapping[str, torch.Tensor], prune_fraction: float) -> float:
    """The ``|gamma|`` at or below which ``prune_fraction`` of all channels lie: slimming's one global threshold.

    All layers' scales are ranked together, so a layer whose scales the L1
    term pushed down loses many channels and a layer that needs its channels
    keeps them: slimming *chooses* each layer's width.
    """
    check_sparsity(prune_fraction, "prune_fraction")
    everything = torch.sort(torch.cat([s.flatten() for s in scales.values()])).values
    pruned = round(prune_fraction * everything.numel())
    return float(everything[pruned - 1]) if pruned > 0 else -math.inf


def slimming_keep(scales: Mapping[str, torch.Tensor], threshold: float,
                  min_channels: int = 1) -> dict[str, torch.Tensor]:
    """Which channels survive: ``|gamma| > threshold``, but never fewer than ``min_channels`` per layer.

    The floor matters: one global threshold can remove *every* channel of a
    layer whose scales all ended small, which disconnects the network (the most
    reported crash of both reference implementations). A layer left with fewer
    than ``min_channels`` keeps its ``min_channels`` largest scales instead
    (ties to the lower index).
    """
    if min_channels < 1:
        raise ValueError(f"min_channels must be at least 1 (a layer without channels disconnects the network), "
                         f"got {min_channels}.")
    keep = {}
    for layer, s in scales.items():
        alive = s > threshold
        if int(alive.sum()) < min_channels:
            alive = torch.zeros_like(alive)
            alive[torch.argsort(-s, stable=True)[:min_channels]] = True
        keep[layer] = alive
    return keep


def slimming_masks(model: nn.Module, threshold: float, min_channels: int = 1) -> Masks:
    """Masks removing every channel whose ``|gamma|`` is at most ``threshold`` (with the per-layer floor).

    A removed channel takes its filter, its BatchNorm scale and shift, as in
    :func:`~course_lib.pruning.selection.structured_masks`;
    :func:`~course_lib.pruning.surgery.shrink` then removes it physically.
    """
    return unit_masks(model, slimming_keep(batchnorm_scales(model), threshold, min_channels))


def slim(model: nn.Module, prune_fraction: float, min_channels: int) -> nn.Module:
    """The physically smaller network network slimming finds: one global |gamma| threshold, a per-layer floor."""
    threshold = global_threshold(batchnorm_scales(model), prune_fraction)
    masked = copy.deepcopy(model)
    apply_masks(masked, slimming_masks(masked, threshold, min_channels))
    return shrink(masked)
