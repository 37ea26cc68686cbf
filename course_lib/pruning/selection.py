"""Which weights to prune: a *criterion* scores them, a *scope* and a *structure* turn scores into masks.

* **Criteria** (higher score = more important, kept longer): weight magnitude
  ``|w|``; random (the control every method must beat); first-order Taylor
  ``|w * dL/dw|`` (the loss change if the weight were removed, to first order).
* **Scope**: ``"local"`` prunes the same fraction of every layer; ``"global"``
  ranks all weights of all layers together, so layers with many small weights
  lose more; ``"row"`` prunes the same number of inputs from every output unit
  (row of the weight), so each unit keeps exactly k of its n inputs - the
  structure of chapter 7's DPP masks. Layers can be excluded, or given a rate multiplier (the
  lottery-ticket paper prunes the output layer at half the rate).
* **Structure**: single weights (unstructured); N:M (keep N of every M
  consecutive inputs, the pattern of 2:4 sparse tensor cores); or whole
  neurons/filters ranked by the L1 or L2 norm of their weights, or by the
  scale ``|gamma|`` of their BatchNorm (network slimming).

Rules the literature shows people get wrong, and that this module follows:
rank only the weights that survive (already-pruned ones stay pruned; a mask
never grows back here), break ties deterministically (the lower index is
pruned first), and leave biases and BatchNorm alone unless a whole unit goes.

Every function returns a :data:`~course_lib.masks.Masks` dict; attach it with
:func:`course_lib.masks.apply_masks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import batches
from course_lib.masks import Masks, check_sparsity, get_masks, layer_sparsities, prunable_weights, trainable_tensor
from course_lib.profiles import shifted_seed
from course_lib.costs import prunable_layers

Criterion = Literal["magnitude", "random", "taylor"]
UnitCriterion = Literal["l1", "l2", "bn_scale", "random"]
Scope = Literal["local", "global", "row"]


class LayerCollapseError(ValueError):
    """Pruning would remove every unit of a layer, cutting the network in two."""


def _check_request(sparsity: float, scope: str) -> None:
    check_sparsity(sparsity)
    if scope not in ("local", "global", "row"):
        raise ValueError(f"scope must be 'local', 'global' or 'row', got {scope!r}.")


def keep_per_row(sparsity: float, n: int) -> int:
    """How many of a row's ``n`` entries a sparsity keeps: ``round((1 - sparsity) * n)``, at least 1."""
    check_sparsity(sparsity)
    return max(1, round((1.0 - sparsity) * n))


def output_layer(model: nn.Module) -> str:
    """Name of the last Linear/Conv2d layer (the classifier)."""
    return list(prunable_layers(model))[-1]


def _current_mask(model: nn.Module, name: str, like: torch.Tensor) -> torch.Tensor:
    return get_masks(model).get(name, torch.ones_like(like)).to(like.device)


# ---------------------------------------------------------------- criteria

def magnitude_scores(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """``|w|`` of each named weight (the weight the layer uses: already-pruned ones read 0).

    The one magnitude scorer of the course: :func:`unstructured_masks` and
    :func:`course_lib.pruning.at_init.init_masks` both call it.
    """
    layers = dict(model.named_modules())
    return {n: layers[n.removesuffix(".weight")].weight.detach().abs() for n in names}


def random_scores(model: nn.Module, names: Iterable[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform random scores, seeded: the control that every criterion must beat.

    One generator, seeded once with ``shifted_seed(seed)``, draws the scores of
    the named weights in the order given. So the same ``seed`` and names give
    the same scores on every run and device (they are drawn on the CPU, then
    moved to the weight's device), and different seeds give unrelated ones.
    (Seeding each layer with ``seed + i`` instead would make layer 1 of seed 0
    repeat layer 0 of seed 1: "independent" controls that share scores.)
    The one random scorer of the course: :func:`unstructured_masks` and
    :func:`course_lib.pruning.at_init.init_masks` both call it.
    """
    generator = torch.Generator().manual_seed(shifted_seed(seed))
    layers = dict(model.named_modules())
    scores = {}
    for n in names:
        weight = layers[n.removesuffix(".weight")].weight
        scores[n] = torch.rand(weight.shape, generator=generator).to(weight.device)
    return scores


def taylor_scores(model: nn.Module, names: Iterable[str], data: TensorDataset, num_batches: int = 4,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """First-order Taylor importance ``|w * dL/dw|``, gradients summed over a few batches of ``data``.

    Removing weight w changes the loss by about ``-w * dL/dw``; its size says how
    much the loss would move. Use training (or validation) data, never the test set.
    """
    names = list(names)
    layers = dict(model.named_modules())
    trainables = [trainable_tensor(layers[n.removesuffix(".weight")]) for n in names]
    grads = [torch.zeros_like(t) for t in trainables]
    was_training = model.training
    model.eval()
    device = trainables[0].device
    loss_fn = nn.CrossEntropyLoss()
    for i, (x, y) in enumerate(batches(data, batch_size)):
        if i == num_batches:
            break
        model.zero_grad(set_to_none=True)
        loss_fn(model(x.to(device)), y.to(device)).backward()
        for g, t in zip(grads, trainables):
            g += t.grad
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: (layers[n.removesuffix(".weight")].weight.detach() * g).abs() for n, g in zip(names, grads)}


def weight_scores(model: nn.Module, criterion: Criterion, names: Iterable[str],
                  data: TensorDataset | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores of the named weights by ``criterion`` (``"taylor"`` needs ``data``)."""
    if criterion == "magnitude":
        return magnitude_scores(model, names)
    if criterion == "random":
        return random_scores(model, names, seed)
    if criterion == "taylor":
        if data is None:
            raise ValueError("The Taylor criterion needs data to compute gradients: pass data=splits.train.")
        return taylor_scores(model, names, data)
    raise ValueError(f"Unknown criterion {criterion!r}; use 'magnitude', 'random' or 'taylor'.")


# ---------------------------------------------------------------- unstructured

def _prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 keep-mask (flat) that prunes the ``k`` lowest scores; equal scores: lower index first."""
    keep = torch.ones_like(scores)
    order = torch.sort(scores, stable=True).indices
    keep[order[:k]] = 0.0
    return keep


def _prune_jointly(scores: Mapping[str, torch.Tensor], sparsity: float, where: str) -> dict[str, torch.Tensor]:
    """One ranking over all the given score tensors: keep-masks of their shapes, by name."""
    names = list(scores)
    kept = _prune_pool(torch.cat([scores[n].flatten() for n in names]), sparsity, where)
    parts = torch.split(kept, [scores[n].numel() for n in names])
    return {n: part.reshape(scores[n].shape) for n, part in zip(names, parts)}


def row_keep_mask(scores: torch.Tensor, sparsity: float, where: str = "The scores") -> torch.Tensor:
    """Keep the ``keep_per_row(sparsity, n)`` highest scores of every row (output unit); ties: lower index pruned.

    A 0/1 mask of the scores' shape; ``-inf`` marks a weight already pruned, which stays pruned."""
    rows = scores.reshape(scores.shape[0], -1)
    pruned_per_row = rows.shape[1] - keep_per_row(sparsity, rows.shape[1])
    if int(torch.isinf(rows).sum(dim=1).max()) > pruned_per_row:
        raise ValueError(f"{where} has a row that is already sparser than the requested {sparsity:.1%}: "
                         "masks here only shrink. Ask for a sparsity of at least the current one.")
    keep = torch.ones_like(rows)
    keep.scatter_(1, torch.sort(rows, dim=1, stable=True).indices[:, :pruned_per_row], 0.0)
    return keep.reshape(scores.shape)


def _prune_pool(flat_scores: torch.Tensor, sparsity: float, where: str) -> torch.Tensor:
    dead = int(torch.isinf(flat_scores).sum())
    k = round(sparsity * flat_scores.numel())
    if k < dead:
        raise ValueError(f"{where} is already {dead / flat_scores.numel():.1%} sparse, more than the requested "
                         f"{sparsity:.1%}: masks here only shrink. Ask for a sparsity of at least the current one.")
    return _prune_lowest(flat_scores, k)


def masks_from_scores(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    scope: Scope = "global",
    rate_multipliers: Mapping[str, float] | None = None,
) -> Masks:
    """Turn per-weight scores into masks that remove the lowest-scoring fraction ``sparsity``.

    ``scores`` maps weight names (``"net.fc1.weight"``) to tensors of their shape;
    higher = more important. Weights the model has already pruned are ranked
    below everything (they stay pruned). ``rate_multipliers`` scale the
    sparsity of single layers, which are then pruned locally.
    """
    _check_request(sparsity, scope)
    multipliers = {k.removesuffix(".weight"): v for k, v in (rate_multipliers or {}).items()}
    unknown = set(multipliers) - {n.removesuffix(".weight") for n in scores}
    if unknown:
        raise ValueError(f"rate_multipliers names {sorted(unknown)}, which are not prunable (or are excluded).")
    ranked = {}
    for name, s in scores.items():  # rank only survivors: pruned weights score -inf
        s = s.detach().clone().float()
        s[_current_mask(model, name, s) == 0] = float("-inf")
        ranked[name] = s

    masks: Masks = {}
    pooled = [n for n in ranked if scope == "global" and n.removesuffix(".weight") not in multipliers]
    if pooled:
        masks.update(_prune_jointly({n: ranked[n] for n in pooled}, sparsity, "The global pool of weights"))
    for n in ranked:
        if n in masks:
            continue
        layer_sparsity = sparsity * multipliers.get(n.removesuffix(".weight"), 1.0)
        check_sparsity(layer_sparsity, f"sparsity of {n} (sparsity x its rate multiplier)")
        if scope == "row":
            masks[n] = row_keep_mask(ranked[n], layer_sparsity, f"Layer {n}")
            continue
        masks[n] = _prune_pool(ranked[n].flatten(), layer_sparsity, f"Layer {n}").reshape(ranked[n].shape)
    return masks


def unstructured_masks(
    model: nn.Module,
    sparsity: float,
    criterion: Criterion = "magnitude",
    scope: Scope = "global",
    exclude: Iterable[str] = (),
    rate_multipliers: Mapping[str, float] | None = None,
    data: TensorDataset | None = None,
    seed: int = 0,
) -> Masks:
    """Masks that remove a fraction ``sparsity`` of the weights, lowest scores first.

    Args:
        model: its current masks are respected: pruned weights stay pruned and
            only survivors are ranked.
        sparsity: target fraction of zero weights, over the included layers
            (global) or in each layer (local).
        criterion: ``"magnitude"``, ``"random"`` or ``"taylor"``.
        scope: ``"global"`` (one ranking over all layers), ``"local"`` (per layer)
            or ``"row"`` (per output unit: every row keeps exactly k of its n weights).
        exclude: layers left dense (by name, e.g. ``"net.fc3"``).
        rate_multipliers: per-layer factor on the sparsity, e.g. ``{"net.fc3": 0.5}``
            prunes that layer at half the rate. Such layers are pruned locally,
            outside the global ranking.
        data: training data, for the Taylor criterion.
        seed: for the random criterion.
    """
    _check_request(sparsity, scope)
    weights = prunable_weights(model, exclude)
    scores = weight_scores(model, criterion, weights, data, seed)
    return masks_from_scores(model, scores, sparsity, scope, rate_multipliers)


def random_masks_like(masks: Masks, seed: int = 0) -> Masks:
    """Random masks with exactly the same number of kept weights in every layer.

    The control of the lottery-ticket and pruning-at-initialization papers:
    does *which* weights are kept matter, or only *how many* per layer?
    """
    generator = torch.Generator().manual_seed(shifted_seed(seed))
    shuffled = {}
    for name, mask in masks.items():
        flat = mask.flatten()
        shuffled[name] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(mask.shape).clone()
    return shuffled


def percent_kept_per_layer(masks: Masks, model: nn.Module) -> dict[str, float]:
    """Percent of weights kept in each prunable layer of ``model`` (100 for a layer without a mask)."""
    sparsity = layer_sparsities(masks)
    return {n.removesuffix(".weight"): 100.0 - sparsity.get(n.removesuffix(".weight"), 0.0)
            for n in prunable_weights(model)}


def collapsed_layers(masks: Masks) -> list[str]:
    """Layers whose weight mask keeps nothing: the network is cut there."""
    return [name.removesuffix(".weight") for name, mask in masks.items()
            if name.endswith("weight") and mask.sum() == 0]


def n_of_m_keep_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` highest of every ``m`` consecutive scores along the last dimension (the inputs): a 0/1 mask.

    Prunes the ``m - n`` lowest of each group; a stable ascending sort puts ``-inf`` (already pruned) first and,
    among equal scores, the lower index first.
    """
    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m (e.g. n=2, m=4 for 2:4), got n={n}, m={m}.")
    inputs = scores.shape[-1]
    if inputs % m:
        raise ValueError(f"The scores have {inputs} inputs, not divisible by m={m}: choose another m.")
    groups = scores.reshape(-1, m)
    keep = torch.ones_like(groups, dtype=torch.float32)
    keep.scatter_(1, torch.sort(groups, dim=1, stable=True).indices[:, :m - n], 0.0)
    return keep.reshape(scores.shape)


def n_of_m_masks(model: nn.Module, n: int = 2, m: int = 4, exclude: Iterable[str] = ()) -> Masks:
    """Keep the ``n`` largest-magnitude weights in every group of ``m`` consecutive inputs.

    ``n`` counts the weights *kept* per group: 2:4 keeps 2 of every 4, so it
    removes half. (``torch.ao.pruning.WeightNormSparsifier`` counts the other
    way: its ``zeros_per_block`` is the number removed, ``m - n``.)

    Groups run along the input dimension (input features of a Linear, input
    channels of a Conv2d at each kernel position), as in NVIDIA's 2:4 sparsity:
    every output unit keeps exactly ``n/m`` of its inputs, a pattern hardware can
    exploit. The input size of each layer must be divisible by ``m``.

    Like every function here, it respects the model's current masks: only
    surviving weights are ranked, and a pruned weight is never turned back on.
    A group that already has fewer than ``n`` survivors keeps just those; it is
    then sparser than n:m, which the hardware accepts (it needs *at most* ``n``
    non-zeros per group). Ties: the lower index is pruned first.
    """
    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m (e.g. n=2, m=4 for 2:4), got n={n}, m={m}.")
    masks: Masks = {}
    for name, layer in prunable_weights(model, exclude).items():
        w = layer.weight.detach().abs()
        alive = _current_mask(model, name, w).to(w.dtype)
        scores = w.masked_fill(alive == 0, float("-inf"))  # pruned weights rank below every survivor
        # Move the input dimension last: Linear (O, I); Conv2d (O, I, kh, kw) -> (O, kh, kw, I).
        moved = scores if w.dim() == 2 else scores.permute(0, 2, 3, 1)
        if moved.shape[-1] % m:
            raise ValueError(f"Layer {name} has {moved.shape[-1]} inputs, not divisible by m={m}: exclude it "
                             f"(exclude=[{name.removesuffix('.weight')!r}]) or choose another m.")
        keep = n_of_m_keep_mask(moved, n, m)
        keep = keep if w.dim() == 2 else keep.permute(0, 3, 1, 2).contiguous()
        masks[name] = keep * alive  # a group with fewer than n survivors kept some -inf: switch them off
    return masks


# ---------------------------------------------------------------- structured (whole units)

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Layers that treat every channel on its own and turn zeros into zeros: a unit's channel passes through unchanged.
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)


def following_batchnorm(model: nn.Module) -> dict[str, str]:
    """``{layer_name: batchnorm_name}``: the BatchNorm that normalises the outputs of each Linear/Conv2d.

    The course's one rule for "the BatchNorm after a layer", used wherever a
    unit takes its BatchNorm channel along (:func:`structured_masks`, network
    slimming, :func:`course_lib.pruning.surgery.shrink`): the first BatchNorm
    after the layer, reached through channel-wise layers only (ReLU, pooling,
    Dropout), with one feature per output unit of the layer. Anything else in
    between (a Flatten, another Linear/Conv2d) means the layer has none.
    "After" is the order of ``model.named_modules()``: the order in which the
    layers were registered, which in an ``nn.Sequential`` is the forward order.
    On SmallVGG: ``{"net.conv1": "net.bn1", "net.conv2": "net.bn2", ...}``.
    """
    pairs: dict[str, str] = {}
    previous: tuple[str, nn.Module] | None = None  # the last Linear/Conv2d, while its channels are still its units
    for name, module in model.named_modules():
        if previous is not None and name.startswith(f"{previous[0]}."):
            continue  # inside the layer itself, e.g. the parametrization that holds its mask
        if isinstance(module, BATCHNORMS) and previous is not None:
            layer_name, layer = previous
            if module.num_features == layer.weight.shape[0]:  # one feature per output unit
                pairs[layer_name] = name
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            previous = (name, module)
        elif not isinstance(module, CHANNELWISE):
            previous = None
    return pairs


def _scaled_batchnorm(model: nn.Module) -> dict[str, str]:
    """The pairs of :func:`following_batchnorm` whose BatchNorm has a scale and shift (``affine=True``)."""
    modules = dict(model.named_modules())
    return {layer: bn for layer, bn in following_batchnorm(model).items() if modules[bn].affine}


def unit_scores(model: nn.Module, layers: Iterable[str], criterion: UnitCriterion,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """One score per output unit (neuron or filter) of each named layer."""
    modules = dict(model.named_modules())
    bn = _scaled_batchnorm(model)
    generator = torch.Generator().manual_seed(shifted_seed(seed))
    scores = {}
    for name in layers:
        w = modules[name].weight.detach().flatten(1)
        if criterion == "l1":
            scores[name] = w.abs().sum(dim=1)
        elif criterion == "l2":
            scores[name] = w.pow(2).sum(dim=1).sqrt()
        elif criterion == "random":
            scores[name] = torch.rand(w.shape[0], generator=generator).to(w.device)
        elif criterion == "bn_scale":
            if name not in bn:
                raise ValueError(f"Network slimming ranks units by the BatchNorm scale that follows them, but layer "
                                 f"{name} has no BatchNorm with a scale (affine=True) after it. Exclude it or use "
                                 "criterion='l1'.")
            scores[name] = modules[bn[name]].weight.detach().abs()
        else:
            raise ValueError(f"Unknown unit criterion {criterion!r}; use 'l1', 'l2', 'bn_scale' or 'random'.")
    return scores


def structured_masks(
    model: nn.Module,
    sparsity: float,
    criterion: UnitCriterion = "l1",
    scope: Scope = "local",
    exclude: Iterable[str] = (),
    allow_collapse: bool = False,
    seed: int = 0,
) -> Masks:
    """Masks that remove a fraction ``sparsity`` of whole neurons / filters.

    A removed unit takes everything that belongs to it: its row of weights,
    its bias and the scale and shift of the BatchNorm that follows it, so
    that the masked network computes exactly what the physically smaller one
    of :func:`course_lib.pruning.surgery.shrink` computes. The output layer (the
    classes) is never pruned. Which BatchNorm follows a layer is decided by
    :func:`following_batchnorm`; one without scale and shift (``affine=False``)
    has nothing to mask.

    With ``scope="global"``, units of all layers are ranked together by their
    raw scores. Layers whose weights are small overall can then lose *every*
    unit: layer collapse. That raises :class:`LayerCollapseError`, or only
    warns when ``allow_collapse=True`` (to show it happening).
    """
    _check_request(sparsity, scope)
    if scope == "row":
        raise ValueError("scope='row' keeps k inputs of every unit; whole units are ranked 'local' or 'global'.")
    names = [n.removesuffix(".weight") for n in prunable_weights(model, [*exclude])]
    names = [n for n in names if n != output_layer(model)]
    bn = _scaled_batchnorm(model)
    if criterion == "bn_scale":
        names = [n for n in names if n in bn]
    scores = unit_scores(model, names, criterion, seed)
    current = get_masks(model)
    for name, s in scores.items():  # units already removed stay removed
        if f"{name}.weight" in current:
            alive = current[f"{name}.weight"].flatten(1).sum(dim=1) > 0
            s[~alive.to(s.device)] = float("-inf")

    if scope == "global":
        keep = _prune_jointly(scores, sparsity, "The global pool of units")
    else:
        keep = {n: _prune_pool(scores[n], sparsity, f"Layer {n}") for n in names}

    collapsed = [n for n, k in keep.items() if k.sum() == 0]
    if collapsed:
        message = (f"Layer collapse: pruning {sparsity:.0%} of units ({scope}, {criterion}) removes every unit of "
                   f"{collapsed}, which disconnects the network. Use scope='local', a lower sparsity, or exclude "
                   f"these layers.")
        if not allow_collapse:
            raise LayerCollapseError(message)
        warnings.warn(message, stacklevel=2)

    return unit_masks(model, keep)


def unit_masks(model: nn.Module, keep: Mapping[str, torch.Tensor]) -> Masks:
    """Masks that remove the units (neurons, filters) where ``keep[layer]`` is False, and all that belongs to them.

    ``keep`` maps a layer's name to one boolean per output unit. A removed unit
    takes its row of weights, its bias, and the scale and shift of the
    BatchNorm that follows it (:func:`following_batchnorm`). Weights the
    model's current masks already prune stay pruned.
    """
    modules = dict(model.named_modules())
    bn = _scaled_batchnorm(model)
    current = get_masks(model)
    masks: Masks = {}
    for name, k in keep.items():
        layer = modules[name]
        if k.shape != (layer.weight.shape[0],):
            raise ValueError(f"keep[{name!r}] must have one entry per output unit ({layer.weight.shape[0]}), "
                             f"got shape {tuple(k.shape)}.")
        k = k.to(device=layer.weight.device, dtype=layer.weight.dtype)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        old = current.get(f"{name}.weight", torch.ones_like(layer.weight)).to(k.device)
        masks[f"{name}.weight"] = old * k.reshape(shape)
        if layer.bias is not None:
            masks[f"{name}.bias"] = k.clone()
        if name in bn:
            masks[f"{bn[name]}.weight"] = k.clone()
            if modules[bn[name]].bias is not None:
                masks[f"{bn[name]}.bias"] = k.clone()
    return masks
