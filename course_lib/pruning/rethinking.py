"""Rethinking the value of pruning (Liu et al. 2019): the kept weights, or the architecture they leave?

Pruning a trained network gives two things at once: an *architecture* (which
filters, neurons or weights are left) and the *values* those have. Liu et al.
separate them by training the architecture alone, from a fresh random
initialisation, and compare three ways to get the final network:

* **fine-tuned** - the usual pipeline: the pruned, trained weights, retrained briefly;
* **Scratch-E** - the pruned architecture, re-initialised at random, trained
  for as many epochs as the dense network was;
* **Scratch-B** - the same, trained for the same *compute* as the dense network.
  A smaller network does fewer multiply-accumulates per image, so the same
  budget buys it more epochs::

      epochs_B = epochs x (dense MACs per image) / (pruned MACs per image)

  Liu et al. cap the factor at 2 on ImageNet and leave it uncapped on CIFAR;
  ``cap`` chooses. The learning-rate schedule is defined on steps, so its
  milestones stay at the same fractions of the longer run.

For *structured* pruning the architecture is a physically smaller dense
network (:func:`course_lib.pruning.surgery.shrink`); for *unstructured* pruning
it is a mask on the dense one. :func:`reinitialized` handles both.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.costs import layer_costs
from course_lib.devices import model_device
from course_lib.masks import apply_masks, get_masks, scale_to_kept_fan_in, unmasked_copy
from course_lib.profiles import shifted_seed
from course_lib.training import TrainConfig, steps_per_epoch


def total_macs(model: nn.Module) -> int:
    """Multiply-accumulates per image, counting only weights that are not zero.

    For a shrunk (physically smaller) network that is every weight; for a
    masked one it is the surviving weights.
    """
    return int(layer_costs(model).effective_macs.sum())


def scratch_b_factor(dense_macs: int, pruned_macs: int, cap: float | None = None) -> float:
    """How many times the dense run's steps Scratch-B trains: ``dense_macs / pruned_macs``, at most ``cap``."""
    if dense_macs <= 0 or pruned_macs <= 0:
        raise ValueError(f"MACs must be positive, got dense {dense_macs} and pruned {pruned_macs}.")
    if pruned_macs > dense_macs:
        raise ValueError(f"The pruned network ({pruned_macs:,} MACs) costs more than the dense one "
                         f"({dense_macs:,}): pass the models in the order (dense, pruned).")
    if cap is not None and cap < 1:
        raise ValueError(f"cap must be at least 1 (Scratch-B never trains less than Scratch-E), got {cap}.")
    factor = dense_macs / pruned_macs
    return min(factor, cap) if cap is not None else factor


def scratch_b_config(config: TrainConfig, train_size: int, dense: nn.Module, pruned: nn.Module,
                     cap: float | None = None) -> TrainConfig:
    """The dense run's ``config`` stretched to the dense run's compute for ``pruned`` (Scratch-B).

    The budget is in steps: ``round(factor * dense steps)``, rarely a whole number of epochs.
    """
    return config.scaled(scratch_b_factor(total_macs(dense), total_macs(pruned), cap), train_size)


@torch.no_grad()
def reinitialized(model: nn.Module, seed: int, scale_to_fan_in: bool = True) -> nn.Module:
    """``model``'s architecture with fresh random weights (a new network, nothing shared).

    Every layer draws new values with its own ``reset_parameters()`` (PyTorch's
    default initialisation), seeded, on the CPU so that a seed gives the same
    network on every device; BatchNorm statistics are reset too. A masked model
    keeps its masks (the unstructured "scratch" network: the mask, not the values).

    With ``scale_to_fan_in`` each masked unit's weights are scaled by
    ``sqrt(fan_in / kept_fan_in)``. The default initialisation draws a weight's
    scale from the *dense* fan-in; a unit that keeps 16 of 784 inputs would then
    start with outputs about 7x smaller than the dense network's. The scaling
    restores their variance, as initialising for the sparse fan-in does.
    """
    masks = get_masks(model)
    fresh = unmasked_copy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(shifted_seed(seed))
        for module in fresh.modules():
            if module is not fresh and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    if masks:
        apply_masks(fresh, masks)
        if scale_to_fan_in:
            scale_to_kept_fan_in(fresh)
    return fresh.to(model_device(model))


def shares_storage(a: nn.Module, b: nn.Module) -> bool:
    """True when any parameter or buffer of ``a`` uses the memory of one of ``b`` (a scratch model must not)."""
    pointers = {t.untyped_storage().data_ptr() for t in [*b.parameters(), *b.buffers()] if t.numel()}
    return any(t.untyped_storage().data_ptr() in pointers for t in [*a.parameters(), *a.buffers()] if t.numel())


def epochs_of(config: TrainConfig, train_size: int) -> float:
    """The number of passes over the data that ``config`` trains for (fractional for a budget in steps)."""
    return config.total_steps(train_size) / steps_per_epoch(train_size, config.batch_size)
