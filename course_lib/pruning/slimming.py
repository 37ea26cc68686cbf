"""Network slimming (Liu et al. 2017): learn which channels to remove through BatchNorm's scales.

Every channel of a convolution followed by BatchNorm is multiplied by its BN
scale gamma. Training with an L1 penalty ``lambda * sum |gamma|`` pushes the
scales of unneeded channels towards zero; channels whose ``|gamma|`` ends
below one global threshold are then removed. The penalty's subgradient,
``lambda * sign(gamma)``, is added to each scale's gradient between
``backward`` and the optimizer step - a training hook's ``after_backward``.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.pruning.selection import trainable_tensor
from course_lib.training.hooks import Hook, TrainContext

BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)


class BatchNormL1(Hook):
    """The sparsity term of network slimming: adds ``strength * sign(gamma)`` to every BN scale's gradient.

    Example::

        train(model, data, config, hooks=[BatchNormL1(1e-4)])
    """

    def __init__(self, strength: float) -> None:
        if strength < 0:
            raise ValueError(f"strength (lambda) must be zero or positive, got {strength}.")
        self.strength = strength

    @torch.no_grad()
    def after_backward(self, ctx: TrainContext) -> None:
        for layer in ctx.model.modules():
            if isinstance(layer, BATCHNORM) and layer.affine:
                gamma = trainable_tensor(layer, "weight")
                if gamma.grad is not None:
                    gamma.grad.add_(self.strength * torch.sign(gamma))
