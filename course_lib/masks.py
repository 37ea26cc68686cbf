"""Masks: how a pruned weight is kept at zero.

A *mask* is a 0/1 tensor of a parameter's shape: 1 keeps the weight, 0 prunes
it. The course keeps masks in a plain dict, ``{"net.1.weight": mask, ...}``,
keyed by the parameter's qualified name (the name ``model.named_parameters()``
gives it before masking).

**How masks are attached.** With ``torch.nn.utils.parametrize``: the layer's
``weight`` becomes ``original * mask``, computed at every access, with the
trainable ``original`` and the ``mask`` buffer stored in the layer. We chose
it over ``torch.nn.utils.prune`` for three reasons that matter in a course:

* ``copy.deepcopy`` works on a parametrized model (prune's computed
  ``weight`` attribute is not a graph leaf, and deepcopy refuses it), and
  every chapter copies models: a ticket, its control, a fine-tuned variant;
* the mask is an ordinary buffer: it moves with ``model.to(device)`` and is
  saved in ``state_dict()``; :func:`load_masked_state_dict` restores it;
* :func:`remove_masks` ("make permanent") leaves a plain layer with zeros.

**Pruned weights stay zero.** The forward pass always uses ``original * mask``,
so a pruned weight contributes exactly nothing whatever the optimizer does.
But momentum and Adam keep updating ``original`` where the mask is 0 (their
running averages remember old gradients), and a weight that is later
regrown (chapter 6) or made permanent would come back with that stale value.
So :func:`zero_pruned_weights` sets ``original`` to zero under the mask; pass
it to :func:`course_lib.training.train` as an ``after_step`` hook.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

Masks = dict[str, torch.Tensor]

# Layers whose parameters the course can mask. BatchNorm is masked only by
# structured pruning (a removed channel takes its BN scale and shift with it).
MASKABLE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


class WeightMask(nn.Module):
    """The parametrization ``weight = original * mask``; ``mask`` is a buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def _split(name: str) -> tuple[str, str]:
    module_name, _, param = name.rpartition(".")
    return module_name, param


def _mask_module(module: nn.Module, param: str) -> WeightMask | None:
    if parametrize.is_parametrized(module, param):
        for p in module.parametrizations[param]:
            if isinstance(p, WeightMask):
                return p
    return None


def _check(model: nn.Module, name: str, mask: torch.Tensor) -> tuple[nn.Module, str]:
    """Find the layer of parameter ``name`` and check that ``mask`` fits it."""
    module_name, param = _split(name)
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        module = None
    if module is None or not hasattr(module, param):
        names = [n for n, _ in model.named_parameters()]
        raise ValueError(f"The model has no parameter {name!r}. Mask one of: {names}")
    if not isinstance(module, MASKABLE):
        raise TypeError(f"Cannot mask {name!r}: {type(module).__name__} layers are not supported; the course masks "
                        f"{', '.join(t.__name__ for t in MASKABLE)}. Exclude this layer from pruning.")
    shape = tuple(getattr(module, param).shape)
    if tuple(mask.shape) != shape:
        raise ValueError(f"The mask for {name!r} has shape {tuple(mask.shape)}, but the parameter has shape {shape}. "
                         "Build masks from this model's own parameters.")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(f"The mask for {name!r} must contain only 0 (prune) and 1 (keep).")
    return module, param


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Attach (or replace) masks and set the pruned stored weights to zero.

    A parameter that is already masked gets its mask buffer overwritten, so
    pruning again never stacks parametrizations. All masks are checked before
    any is applied.
    """
    checked = [(name, *_check(model, name, mask), mask) for name, mask in masks.items()]
    for name, module, param, mask in checked:
        value = getattr(module, param)
        mask = mask.detach().to(device=value.device, dtype=value.dtype)
        existing = _mask_module(module, param)
        if existing is None:
            parametrize.register_parametrization(module, param, WeightMask(mask.clone()))
        else:
            existing.mask.copy_(mask)
    zero_pruned_weights(model)


def _masked_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, WeightMask]]:
    """Yield ``(qualified_name, layer, param, mask_module)`` for every masked parameter."""
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for param in list(module.parametrizations):
                mask = _mask_module(module, param)
                if mask is not None:
                    yield (f"{module_name}.{param}" if module_name else param), module, param, mask


def get_masks(model: nn.Module) -> Masks:
    """The masks attached to ``model``, keyed by parameter name (copies)."""
    return {name: mask.mask.detach().clone() for name, _, _, mask in _masked_parameters(model)}


def is_masked(model: nn.Module) -> bool:
    """True when any parameter of ``model`` carries a mask."""
    return bool(get_masks(model))


@torch.no_grad()
def zero_pruned_weights(model: nn.Module, step: int | None = None) -> None:
    """Set every stored (``original``) weight under a 0 of its mask to exactly zero.

    Use it as an ``after_step`` hook of :func:`course_lib.training.train`; the
    ``step`` argument is accepted for that and ignored.
    """
    for _, module, param, mask in _masked_parameters(model):
        module.parametrizations[param].original.mul_(mask.mask)


def remove_masks(model: nn.Module) -> None:
    """Make pruning permanent: plain parameters holding the masked values (zeros stay zeros).

    Safe on a ``copy.deepcopy`` of a masked model: the copy and the original
    share the class PyTorch generates for a parametrized layer, and removing
    a parametrization edits that class, which would break the original too.
    Each layer therefore gets a private copy of its class first.
    """
    for _, module, param, _ in list(_masked_parameters(model)):
        cls = module.__class__
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(module, param, leave_parametrized=True)


def load_masked_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a ``state_dict`` saved from a masked model into ``model`` (masked or not).

    A masked model saves ``<layer>.parametrizations.<param>.original`` and
    ``<layer>.parametrizations.<param>.0.mask``; the masks are attached first,
    so that the keys match, then everything is loaded.
    """
    suffix = ".0.mask"
    masks = {key.removesuffix(suffix).replace(".parametrizations.", "."): value
             for key, value in state_dict.items() if key.endswith(suffix) and ".parametrizations." in key}
    apply_masks(model, masks)
    model.load_state_dict(state_dict)


def mask_sparsity(masks: Masks) -> float:
    """Fraction of masked entries that are 0, over all the masks given."""
    total = sum(m.numel() for m in masks.values())
    if total == 0:
        return 0.0
    return 1.0 - sum(float(m.sum()) for m in masks.values()) / total


def layer_sparsities(masks: Masks) -> dict[str, float]:
    """Sparsity in percent of each masked weight, by layer name (``{"net.1": 90.9, ...}``)."""
    return {name.removesuffix(".weight"): 100.0 * (1.0 - float(m.float().mean()))
            for name, m in masks.items() if name.endswith("weight")}
