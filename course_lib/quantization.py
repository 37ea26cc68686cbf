"""8-bit fake quantization: train with the rounding a deployed int8 layer will apply.

A weight tensor is stored as integers ``q`` in [-127, 127] and one float
scale, ``w ~ scale * q`` with ``scale = max |w| / 127`` (symmetric, per
tensor: zero stays exactly zero, so a pruned weight costs nothing to
represent). *Fake* quantization computes with ``scale * round(w / scale)``
in float, so training sees the rounding; rounding has zero gradient almost
everywhere, so the backward pass treats it as the identity (the
straight-through estimator)::

    quantized = w + (scale * round(w / scale) - w).detach()

:class:`FakeQuantize` is a parametrization: registered after a mask on the
same weight it quantizes the *masked* weight (joint pruning and quantization,
chapter 7), and :func:`course_lib.masks.remove_masks` leaves it in place.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib.costs import prunable_layers


class FakeQuantize(nn.Module):
    """``weight -> scale * round(weight / scale)`` with ``2 ** bits - 1`` symmetric levels; identity gradient."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"bits must be between 2 and 16, got {bits}.")
        self.bits = bits
        self.levels = 2 ** (bits - 1) - 1  # 127 for 8 bits: -127 ... 127, zero exact

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().max().clamp_min(1e-12) / self.levels
        quantized = torch.round(weight.detach() / scale).clamp(-self.levels, self.levels) * scale
        return weight + (quantized - weight.detach())


def add_fake_quantization(model: nn.Module, bits: int = 8, exclude: Iterable[str] = ()) -> None:
    """Quantize every prunable weight (except ``exclude``) with :class:`FakeQuantize`, after any mask already there.

    Called on a trained, pruned network it is *post-training* quantization;
    called before training (the DPP hook does, with ``bits=8``) every step
    trains through the rounding: *joint* pruning and quantization.
    """
    excluded = set(exclude)
    unknown = excluded - set(prunable_layers(model))
    if unknown:
        raise ValueError(f"exclude names {sorted(unknown)}, which are not layers with weights; "
                         f"choose from {sorted(prunable_layers(model))}.")
    for name, layer in prunable_layers(model).items():
        if name in excluded:
            continue
        parametrize.register_parametrization(layer, "weight", FakeQuantize(bits))
