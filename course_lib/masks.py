"""Masks: how a pruned weight is kept at zero.

A *mask* is a 0/1 tensor of a parameter's shape: 1 keeps the weight, 0 prunes
it. The course keeps masks in a plain dict, ``{"net.fc1.weight": mask, ...}``,
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

import copy
import re
from collections.abc import Iterable, Iterator

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib.costs import prunable_layers

Masks = dict[str, torch.Tensor]

# Layers whose parameters the course can mask. BatchNorm is masked only by
# structured pruning (a removed channel takes its BN scale and shift with it).
MASKABLE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


class MaskParametrization(nn.Module):
    """Base class of every *mask-like* parametrization: ``weight = original * (a 0/1 mask)``.

    The plain :class:`WeightMask` is one; a learned mask (chapter 7's DPP
    sampler, whose mask is drawn from logits) is another. What they share is
    that :meth:`hard_mask` says which weights are in use, so :func:`get_masks`,
    :func:`zero_pruned_weights` and :func:`remove_masks` work on any of them,
    while other parametrizations on the same weight (fake quantization) are
    left alone.
    """

    def hard_mask(self) -> torch.Tensor:
        """The 0/1 mask in use now (a tensor of the weight's shape)."""
        raise NotImplementedError


class WeightMask(MaskParametrization):
    """The parametrization ``weight = original * mask``; ``mask`` is a buffer.

    The gradient that reaches ``original`` is the masked one (pruned entries get
    zero). RigL grows weights where the *dense* gradient is large, so the mask
    can keep that too: set ``capture_dense_grad = True`` before a forward pass
    and the gradient with respect to the whole weight lands in ``dense_grad``
    during backward.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.capture_dense_grad = False
        self.dense_grad: torch.Tensor | None = None

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        weight = original * self.mask
        if self.capture_dense_grad and weight.requires_grad:
            weight.register_hook(self._keep_dense_grad)
        return weight

    def _keep_dense_grad(self, grad: torch.Tensor) -> None:
        self.dense_grad = grad.detach().clone()

    def hard_mask(self) -> torch.Tensor:
        return self.mask


def _split(name: str) -> tuple[str, str]:
    module_name, _, param = name.rpartition(".")
    return module_name, param


def _mask_index(module: nn.Module, param: str) -> int | None:
    """Position of the mask-like parametrization among those of ``module.param`` (None without one)."""
    if parametrize.is_parametrized(module, param):
        for i, p in enumerate(module.parametrizations[param]):
            if isinstance(p, MaskParametrization):
                return i
    return None


def _mask_module(module: nn.Module, param: str) -> MaskParametrization | None:
    index = _mask_index(module, param)
    return None if index is None else module.parametrizations[param][index]


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
    existing = _mask_module(module, param)
    if existing is not None and not isinstance(existing, WeightMask):
        raise TypeError(f"{name!r} already carries a {type(existing).__name__}, a mask of its own; remove it with "
                        "remove_masks() before attaching a fixed mask.")
    return module, param


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Attach (or replace) masks and set the pruned stored weights to zero.

    A parameter that is already masked gets its mask buffer overwritten, so
    pruning again never stacks parametrizations. A new mask goes *first* in
    the parameter's list of parametrizations (``original * mask``, then e.g.
    fake quantization of the masked weight). All masks are checked before any
    is applied.
    """
    checked = [(name, *_check(model, name, mask), mask) for name, mask in masks.items()]
    for name, module, param, mask in checked:
        value = getattr(module, param)
        mask = mask.detach().to(device=value.device, dtype=value.dtype)
        existing = _mask_module(module, param)
        if existing is not None:
            existing.mask.copy_(mask)
        elif parametrize.is_parametrized(module, param):
            _insert(module, param, WeightMask(mask.clone()), index=0)
        else:
            parametrize.register_parametrization(module, param, WeightMask(mask.clone()))
    zero_pruned_weights(model)


def _insert(module: nn.Module, param: str, mask: WeightMask, index: int = 0) -> None:
    """Put ``mask`` at position ``index`` among the parametrizations ``module.param`` already has."""
    plist = module.parametrizations[param]
    others = list(plist)
    while len(plist):
        del plist[0]
    index = min(index, len(others))
    for p in [*others[:index], mask, *others[index:]]:
        plist.append(p)


def _masked_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, MaskParametrization]]:
    """Yield ``(qualified_name, layer, param, mask_module)`` for every masked parameter."""
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for param in list(module.parametrizations):
                mask = _mask_module(module, param)
                if mask is not None:
                    yield (f"{module_name}.{param}" if module_name else param), module, param, mask


def mask_layers(model: nn.Module) -> dict[str, MaskParametrization]:
    """The mask-like parametrizations of ``model``, by parameter name (``{"net.fc1.weight": WeightMask, ...}``)."""
    return {name: mask for name, _, _, mask in _masked_parameters(model)}


def get_masks(model: nn.Module) -> Masks:
    """The hard 0/1 masks attached to ``model``, keyed by parameter name (copies)."""
    return {name: mask.hard_mask().detach().clone() for name, _, _, mask in _masked_parameters(model)}


def is_masked(model: nn.Module) -> bool:
    """True when any parameter of ``model`` carries a mask."""
    return bool(get_masks(model))


@torch.no_grad()
def zero_pruned_weights(model: nn.Module, step: int | None = None) -> None:
    """Set every stored (``original``) weight under a 0 of its mask to exactly zero.

    Use it as a hook of :func:`course_lib.training.train`; the ``step``
    argument is accepted for that and ignored.
    """
    for module in model.modules():  # the same walk as _masked_parameters, without building names: it runs every step
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                mask = next((p for p in plist if isinstance(p, MaskParametrization)), None)
                if mask is not None:
                    plist.original.mul_(mask.hard_mask())


def remove_masks(model: nn.Module) -> None:
    """Make pruning permanent: the masked values become the stored weights (zeros stay zeros).

    Only mask-like parametrizations are removed; another parametrization on the
    same weight (e.g. fake quantization) stays, now acting on the pruned weight.

    Safe on a ``copy.deepcopy`` of a masked model: the copy and the original
    share the class PyTorch generates for a parametrized layer, and removing
    a parametrization edits that class, which would break the original too.
    Each layer therefore gets a private copy of its class first.
    """
    for name, module, param, mask in list(_masked_parameters(model)):
        plist = module.parametrizations[param]
        index = _mask_index(module, param)
        if index != 0:
            raise ValueError(f"The mask of {name!r} sits after another parametrization ({type(plist[0]).__name__}), "
                             "so it cannot be folded into the stored weight. Remove that parametrization first.")
        with torch.no_grad():
            plist.original.mul_(mask.hard_mask())
        cls = module.__class__
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        if len(plist) == 1:
            parametrize.remove_parametrizations(module, param, leave_parametrized=True)
        else:
            del plist[0]


def unmasked_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its masks: the same architecture, to load other values into.

    Rewinding a ticket loads theta_k into it; a fresh initialisation resets it.
    """
    fresh = copy.deepcopy(model)
    remove_masks(fresh)
    return fresh


def load_masked_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a ``state_dict`` saved from a masked model into ``model`` (masked or not).

    A masked model saves ``<layer>.parametrizations.<param>.original`` and
    ``<layer>.parametrizations.<param>.<i>.mask``, where ``i`` is the mask's
    position among that weight's parametrizations. Each fixed mask is attached
    at its position first, so that the keys match, then everything is loaded.
    Other parametrizations (a learned mask, fake quantization) must be
    registered on ``model`` by the caller before loading, as for any
    parametrized model.
    """
    pattern = re.compile(r"^(?P<layer>.*)\.parametrizations\.(?P<param>\w+)\.(?P<index>\d+)\.mask$")
    for key, value in state_dict.items():
        match = pattern.match(key)
        if not match:
            continue
        name = f"{match['layer']}.{match['param']}"
        module, param = _check(model, name, value)
        if _mask_module(module, param) is not None:
            continue  # already masked: load_state_dict below overwrites the mask's values
        mask = WeightMask(value.detach().clone().to(getattr(module, param).device))
        if parametrize.is_parametrized(module, param):
            _insert(module, param, mask, index=int(match["index"]))
        else:
            parametrize.register_parametrization(module, param, mask)
    model.load_state_dict(state_dict)


@torch.no_grad()
def scale_to_kept_fan_in(model: nn.Module) -> None:
    """Rescale every masked unit's stored weights by ``sqrt(fan_in / kept_fan_in)``, in place.

    PyTorch's default initialisation draws a weight's scale from the layer's
    *dense* fan-in. A unit that keeps 16 of its 784 inputs would then start with
    outputs about 7x smaller than the dense network's, and so would every layer
    after it. Multiplying by ``sqrt(784 / 16)`` restores the variance the
    initialisation meant, as drawing it for the sparse fan-in does. Used on a
    freshly initialised masked network (chapter 5's scratch networks, the start
    of chapter 6's sparse training), never on trained weights.
    """
    for name, _, param, mask in _masked_parameters(model):
        hard = mask.hard_mask()
        if hard.dim() < 2:
            continue  # a BatchNorm vector has no fan-in
        module = model.get_submodule(name.rpartition(".")[0])
        original = module.parametrizations[param].original
        kept = hard.flatten(1).sum(dim=1).clamp(min=1)
        scale = torch.sqrt(hard[0].numel() / kept).to(original.dtype)
        original.mul_(scale.reshape(-1, *([1] * (original.dim() - 1))))


def mask_sparsity(masks: Masks) -> float:
    """Fraction of masked entries that are 0, over all the masks given."""
    total = sum(m.numel() for m in masks.values())
    if total == 0:
        return 0.0
    return 1.0 - sum(float(m.sum()) for m in masks.values()) / total


def weight_masks(masks: Masks) -> Masks:
    """The masks of weight matrices and kernels only (2 or more dimensions).

    A BatchNorm scale is also called ``weight``, but it is a per-channel vector
    that structured pruning masks along with its channel, not a weight that
    sparsity is counted over.
    """
    return {name: m for name, m in masks.items() if name.endswith(".weight") and m.dim() >= 2}


def layer_sparsities(masks: Masks) -> dict[str, float]:
    """Sparsity in percent of each masked weight matrix or kernel, by layer name (see :func:`weight_masks`)."""
    return {name.removesuffix(".weight"): 100.0 * (1.0 - float(m.float().mean()))
            for name, m in weight_masks(masks).items()}


def check_sparsity(sparsity: float, what: str = "sparsity") -> None:
    """Refuse a sparsity outside [0, 1): 1.0 would prune everything, 90 % is written 0.9."""
    if not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1), e.g. 0.9 for 90 % of weights removed; got {sparsity!r}.")


def prunable_weights(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Module]:
    """``{"net.fc1.weight": layer, ...}`` for every Linear/Conv2d not excluded (by layer or weight name)."""
    excluded = {e.removesuffix(".weight") for e in exclude}
    layers = prunable_layers(model)
    unknown = excluded - set(layers)
    if unknown:
        raise ValueError(f"Cannot exclude {sorted(unknown)}: not Linear/Conv2d layers of the model. "
                         f"Its prunable layers are {list(layers)}.")
    return {f"{name}.weight": layer for name, layer in layers.items() if name not in excluded}


def trainable_tensor(layer: nn.Module, param: str = "weight") -> torch.Tensor:
    """The tensor the optimizer updates: ``original`` of a masked parameter, else the parameter."""
    if parametrize.is_parametrized(layer, param):
        return layer.parametrizations[param].original
    return getattr(layer, param)
