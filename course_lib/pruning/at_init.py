"""Pruning at initialization: score the weights of an *untrained* network, prune, then train once.

Three scores, each "higher = keep" (turn them into masks with
:func:`course_lib.pruning.masks_from_scores`, global top-k, ties by index):

* **SNIP** (Lee et al. 2019): ``|theta * dL/dtheta|`` on a few training batches,
  how much the loss would change if the weight were removed (first order).
* **GraSP** (Wang et al. 2020): ``theta * (H g)``, with g the gradient and H the
  Hessian of the loss. The paper writes the score as ``-theta * Hg`` and
  removes the *largest*; keeping the largest ``theta * Hg`` is the same rule.
  It keeps the weights that help the gradient flow.
* **SynFlow** (Tanaka et al. 2020): data-free. Replace every parameter by its
  absolute value, feed an input of ones, and score ``|theta * dR/dtheta|`` with
  R the sum of the outputs: the "synaptic flow" through each weight. Applied
  *iteratively* (100 rounds, density shrinking exponentially), it never removes
  a whole layer while others keep weights to spare: no layer collapse.

One-shot SNIP and GraSP, like global magnitude pruning, tend to empty the
largest layers first; at extreme sparsity a layer can lose every weight and
the network output becomes constant ("layer collapse").
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import batches
from course_lib.masks import Masks, apply_masks
from course_lib.pruning.selection import magnitude_scores, masks_from_scores, random_scores, taylor_scores
from course_lib.masks import prunable_weights, trainable_tensor


def snip_scores(model: nn.Module, data: TensorDataset, num_batches: int = 4,
                batch_size: int = 256) -> dict[str, torch.Tensor]:
    """SNIP: ``|theta * dL/dtheta|`` at initialization (the first-order Taylor score)."""
    return taylor_scores(model, prunable_weights(model), data, num_batches, batch_size)


def grasp_scores(model: nn.Module, data: TensorDataset, num_batches: int = 4, batch_size: int = 256,
                 temperature: float = 200.0) -> dict[str, torch.Tensor]:
    """GraSP: ``theta * (H g)``, the Hessian-gradient product by double back-propagation.

    g is the loss gradient summed over ``num_batches`` batches (detached); then
    ``z = g . dL/dtheta`` is differentiated once more, which gives ``H g``.
    Logits are divided by ``temperature`` (200, as in the authors' code) so
    that the softmax is not saturated at initialization.
    """
    names = list(prunable_weights(model))
    layers = dict(model.named_modules())
    params = [trainable_tensor(layers[n.removesuffix(".weight")]) for n in names]
    loss_fn = nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    device = params[0].device
    chosen = [(x.to(device), y.to(device)) for i, (x, y) in enumerate(batches(data, batch_size)) if i < num_batches]
    g = [torch.zeros_like(p) for p in params]
    for x, y in chosen:
        for total, grad in zip(g, torch.autograd.grad(loss_fn(model(x) / temperature, y), params)):
            total += grad
    hg = [torch.zeros_like(p) for p in params]
    for x, y in chosen:
        grads = torch.autograd.grad(loss_fn(model(x) / temperature, y), params, create_graph=True)
        z = sum((gi * grad).sum() for gi, grad in zip(g, grads))
        for total, second in zip(hg, torch.autograd.grad(z, params)):
            total += second
    model.train(was_training)
    return {n: (layers[n.removesuffix(".weight")].weight.detach() * h).detach() for n, h in zip(names, hg)}


@torch.no_grad()
def _positive_copy(model: nn.Module) -> nn.Module:
    """A double-precision copy in eval mode with every parameter and buffer replaced by its absolute value."""
    work = copy.deepcopy(model).double().eval()
    for tensor in [*work.parameters(), *work.buffers()]:
        if tensor.is_floating_point():
            tensor.abs_()
    return work


def synflow_scores(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> dict[str, torch.Tensor]:
    """SynFlow: ``|theta * dR/dtheta|`` with R = sum of the outputs of the all-positive network on ones.

    Works on a double-precision copy in eval mode (BatchNorm uses its running
    statistics); biases and BatchNorm take part in the flow but are not scored.
    """
    return _synflow_on(_positive_copy(model), input_shape)


def _synflow_on(work: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    names = list(prunable_weights(work))
    layers = dict(work.named_modules())
    work.zero_grad(set_to_none=True)
    work(torch.ones(1, *input_shape, dtype=torch.float64, device=next(work.parameters()).device)).sum().backward()
    scores = {}
    for n in names:
        layer = layers[n.removesuffix(".weight")]
        scores[n] = (layer.weight.detach() * trainable_tensor(layer).grad).abs().float()
    return scores


def _without(scores: dict[str, torch.Tensor], exclude: Iterable[str]) -> dict[str, torch.Tensor]:
    left_out = {name.removesuffix(".weight") for name in exclude}
    return {name: s for name, s in scores.items() if name.removesuffix(".weight") not in left_out}


def synflow_masks(model: nn.Module, sparsity: float, iterations: int = 100,
                  input_shape: tuple[int, ...] = (1, 28, 28), exclude: Iterable[str] = ()) -> Masks:
    """Iterative SynFlow: ``iterations`` rounds of scoring and pruning, density shrinking exponentially.

    Round k keeps a fraction ``(1 - sparsity) ** (k / iterations)`` of the
    weights (global ranking), then scores again with those masks in place.
    Layers in ``exclude`` stay dense.
    """
    work = _positive_copy(model)
    masks: Masks = {}
    for k in range(1, iterations + 1):
        target = 1.0 - (1.0 - sparsity) ** (k / iterations)
        masks = masks_from_scores(work, _without(_synflow_on(work, input_shape), exclude), target, scope="global")
        apply_masks(work, {n: m.double() for n, m in masks.items()})
    return {n: m.float() for n, m in masks.items()}


def init_masks(model: nn.Module, method: str, sparsity: float, data: TensorDataset | None = None,
               seed: int = 0, exclude: Iterable[str] = ()) -> Masks:
    """Masks for ``model`` at initialization by ``method``: ``"snip"``, ``"grasp"``, ``"synflow"`` (iterative),
    ``"synflow-oneshot"``, ``"magnitude"`` or ``"random"`` (uniform density in every layer).

    ``"magnitude"`` and ``"random"`` score with the same functions as the rest
    of the course (:func:`~course_lib.pruning.selection.magnitude_scores`,
    :func:`~course_lib.pruning.selection.random_scores`, seeded by ``seed``),
    so ``init_masks(model, "random", s, seed=k)`` equals
    ``unstructured_masks(model, s, "random", scope="local", seed=k)`` and
    ``init_masks(model, "magnitude", s)`` equals ``unstructured_masks(model, s)``
    (global, as the other scores here). Layers in ``exclude`` stay dense.
    """
    if method in ("snip", "grasp") and data is None:
        raise ValueError(f"{method} needs training data: pass data=splits.train.")
    if method == "synflow":
        return synflow_masks(model, sparsity, exclude=exclude)
    names = list(prunable_weights(model))
    scorers = {
        "snip": lambda: snip_scores(model, data),
        "grasp": lambda: grasp_scores(model, data),
        "synflow-oneshot": lambda: synflow_scores(model),
        "magnitude": lambda: magnitude_scores(model, names),
        "random": lambda: random_scores(model, names, seed),
    }
    if method not in scorers:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted([*scorers, 'synflow'])}.")
    scope = "local" if method == "random" else "global"
    return masks_from_scores(model, _without(scorers[method](), exclude), sparsity, scope=scope)
