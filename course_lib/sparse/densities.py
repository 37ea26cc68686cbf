"""How dense each layer of a sparse network is: uniform, Erdős–Rényi and ERK.

Sparse training fixes the number of weights of every layer before training
starts. Three ways to share a global density D among the layers:

* **uniform**: every layer keeps the same fraction D.
* **Erdős–Rényi (ER)** (Mocanu et al. 2018): a layer with ``n_in`` inputs and
  ``n_out`` outputs keeps a fraction proportional to ``(n_in + n_out) / (n_in * n_out)``,
  so large layers are sparser than small ones.
* **Erdős–Rényi-Kernel (ERK)** (Evci et al. 2020): the same for convolutions,
  with the kernel size counted too:
  ``(n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w)``.

ER and ERK give each layer ``eps * raw_i``, with one ``eps`` chosen so that the
kept weights add up to D of all weights. A small layer can come out above 1
(denser than dense); RigL's rule is to make such a layer dense and solve for
``eps`` again over the others, until every density is at most 1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from course_lib.masks import Masks
from course_lib.profiles import shifted_seed
from course_lib.masks import check_sparsity, prunable_weights

Distribution = Literal["uniform", "er", "erk"]


def raw_density(weight_shape: torch.Size | tuple[int, ...], distribution: Distribution) -> float:
    """The unnormalised ER/ERK density of a weight: sum of its dimensions over their product.

    A Linear weight is ``(n_out, n_in)``; a Conv2d weight ``(n_out, n_in, k_h, k_w)``.
    ER ignores the kernel dimensions; ERK counts them.
    """
    dims = list(weight_shape) if distribution == "erk" else list(weight_shape[:2])
    return sum(dims) / math.prod(dims)


def layer_densities(model: nn.Module, sparsity: float, distribution: Distribution = "erk",
                    exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """The density (fraction kept) of every prunable weight for a global ``sparsity``.

    Args:
        model: the network; its Linear and Conv2d weights are shared out
            (biases and BatchNorm stay dense).
        sparsity: fraction of all those weights to remove, e.g. 0.9.
        distribution: ``"uniform"``, ``"er"`` or ``"erk"``.
        exclude: layers kept dense and left out of the count.

    Returns:
        ``{"net.fc1.weight": 0.07, ...}``; the kept weights add up to
        ``(1 - sparsity)`` of all the prunable weights (up to rounding).
    """
    check_sparsity(sparsity)
    if distribution not in ("uniform", "er", "erk"):
        raise ValueError(f"distribution must be 'uniform', 'er' or 'erk', got {distribution!r}.")
    sizes = {name: layer.weight.shape for name, layer in prunable_weights(model, exclude).items()}
    if distribution == "uniform":
        return {name: 1.0 - sparsity for name in sizes}
    numel = {name: math.prod(shape) for name, shape in sizes.items()}
    budget = (1.0 - sparsity) * sum(numel.values())
    dense: set[str] = set()
    while True:
        # Weights of dense layers are spent; eps spreads the rest over the others in proportion to raw_i * n_i.
        rest = budget - sum(numel[n] for n in dense)
        eps = rest / sum(raw_density(sizes[n], distribution) * numel[n] for n in sizes if n not in dense)
        over = {n for n in sizes if n not in dense and eps * raw_density(sizes[n], distribution) > 1.0}
        if not over:
            return {n: 1.0 if n in dense else eps * raw_density(sizes[n], distribution) for n in sizes}
        dense |= over


def random_masks(model: nn.Module, densities: dict[str, float], seed: int = 0) -> Masks:
    """Random masks keeping ``round(density * n)`` weights of each layer, seeded.

    The starting point of static sparse training, SET and RigL.
    """
    generator = torch.Generator().manual_seed(shifted_seed(seed))
    layers = dict(model.named_modules())
    masks = {}
    for name, density in densities.items():
        if not 0.0 < density <= 1.0:
            raise ValueError(f"The density of {name!r} must be in (0, 1], got {density}.")
        weight = layers[name.removesuffix(".weight")].weight
        keep = max(1, round(density * weight.numel()))
        order = torch.randperm(weight.numel(), generator=generator)
        mask = torch.zeros(weight.numel())
        mask[order[:keep]] = 1.0
        masks[name] = mask.reshape(weight.shape).to(weight.device)
    return masks
