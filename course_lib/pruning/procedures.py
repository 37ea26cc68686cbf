"""Pruning procedures: prune a trained network and retrain it, in the ways the papers compare.

Every procedure takes a trained model and returns a pruned *copy* (the
original is untouched, so one baseline serves every experiment), and takes a
``make_masks(model, sparsity)`` function that decides *which* weights go,
e.g. ``magnitude("global")``. Retraining always keeps the masks:
:func:`finetune` adds :func:`~course_lib.masks.zero_pruned_weights` after
every optimizer step.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from course_lib.cache import cached_run, weights_digest
from course_lib.data import DataSplits
from course_lib.masks import (Masks, apply_masks, get_masks, load_masked_state_dict, mask_sparsity, weight_masks,
                               zero_pruned_weights)
from course_lib.pruning.selection import (Criterion, Scope, UnitCriterion, random_masks_like, structured_masks,
                                          unstructured_masks)
from course_lib.masks import check_sparsity, prunable_weights
from course_lib.sparse.schedules import iterative_sparsities
from course_lib.sparse.updaters import AGP
from course_lib.training import History, Hook, StepFunction, TrainConfig, evaluate, train

MaskFn = Callable[[nn.Module, float], Masks]


def _described(make_masks: MaskFn, settings: dict[str, Any]) -> MaskFn:
    """Attach what ``make_masks`` does, as plain settings, when they can be written down (JSON): a cached run keys
    on them (see :func:`prune_and_finetune`). A function given data or tensors is left undescribed, and uncached."""
    try:
        json.dumps(settings)
    except TypeError:
        return make_masks
    make_masks.settings = settings  # type: ignore[attr-defined]
    return make_masks


def magnitude(scope: Scope = "global", criterion: Criterion = "magnitude", **options: object) -> MaskFn:
    """A ``make_masks`` function for unstructured pruning, e.g. ``magnitude("local")``.

    ``options`` go to :func:`course_lib.pruning.unstructured_masks` (``exclude``,
    ``rate_multipliers``, ``data``, ``seed``).
    """
    def make_masks(model: nn.Module, sparsity: float) -> Masks:
        return unstructured_masks(model, sparsity, criterion=criterion, scope=scope, **options)  # type: ignore[arg-type]
    return _described(make_masks, {"unstructured": criterion, "scope": scope, **options})


def units(criterion: UnitCriterion = "l1", scope: Scope = "local", **options: object) -> MaskFn:
    """A ``make_masks`` function for structured pruning of whole neurons/filters, e.g. ``units("bn_scale", "global")``.

    ``options`` go to :func:`course_lib.pruning.structured_masks` (``exclude``,
    ``allow_collapse``, ``seed``).
    """
    def make_masks(model: nn.Module, sparsity: float) -> Masks:
        return structured_masks(model, sparsity, criterion=criterion, scope=scope, **options)  # type: ignore[arg-type]
    return _described(make_masks, {"units": criterion, "scope": scope, **options})


@dataclass
class Pruned:
    """A pruned (and usually retrained) copy of a model, with how it got there."""

    model: nn.Module
    histories: list[History] = field(default_factory=list)
    schedule: list[tuple[int, float]] = field(default_factory=list)  # (step, sparsity) of gradual mask updates

    @property
    def sparsity(self) -> float:
        """Fraction of the masked weights that are zero."""
        return mask_sparsity(weight_masks(get_masks(self.model)))


def finetune(model: nn.Module, data: DataSplits, config: TrainConfig, extra_hooks: Sequence[Hook | StepFunction] = (),
             progress: bool = True, desc: str = "fine-tuning", **train_options: Any) -> History:
    """Train a masked model in place; pruned weights stay exactly zero.

    ``train_options`` go to :func:`course_lib.training.train` (``start_epoch``, ``eval_every``, ...).
    """
    return train(model, data, config, hooks=[*extra_hooks, zero_pruned_weights], progress=progress, desc=desc,
                 **train_options)


def train_masked(model: nn.Module, masks: Masks, data: DataSplits, config: TrainConfig, start_epoch: int = 0,
                 eval_every: int | None = None, progress: bool = True, desc: str = "training") -> History:
    """Attach ``masks`` to ``model`` (in place) and train it, keeping the pruned weights at zero."""
    if masks:
        apply_masks(model, masks)
    return finetune(model, data, config, start_epoch=start_epoch, eval_every=eval_every, progress=progress, desc=desc)


def one_shot(model: nn.Module, sparsity: float, make_masks: MaskFn) -> Pruned:
    """Prune a copy of ``model`` once, without retraining."""
    check_sparsity(sparsity)
    pruned = copy.deepcopy(model)
    apply_masks(pruned, make_masks(pruned, sparsity))
    return Pruned(pruned)


def prune_and_finetune(model: nn.Module, data: DataSplits, sparsity: float, make_masks: MaskFn,
                       config: TrainConfig, progress: bool = True, cached: bool = False) -> Pruned:
    """One-shot train-prune-fine-tune: prune the trained model once, then retrain it.

    Han et al. (2015) repeat prune-and-retrain several times: that is :func:`iterative_pruning`.

    ``cached=True`` goes through the run cache, so that a chapter opened again does not fine-tune again. The key
    holds the trained model's weights (:func:`~course_lib.cache.weights_digest`), the data, the sparsity, the
    recipe, this module's code and what ``make_masks`` does: the library's :func:`magnitude`, :func:`units`,
    :func:`per_layer` and :func:`random_like` say it. A ``make_masks`` of your own cannot be read by the cache, so
    its run is computed every time.
    """
    settings = getattr(make_masks, "settings", None)
    if cached and settings is not None:
        def compute() -> dict[str, Any]:
            done = prune_and_finetune(model, data, sparsity, make_masks, config, progress=progress)
            return {"state": done.model.state_dict(), "histories": [asdict(h) for h in done.histories]}

        saved = cached_run("pruned-finetuned", {"model": weights_digest(model), "data": data.key(), "config": config,
                                                "sparsity": sparsity, "masks": settings}, compute, code=[__name__])
        result = Pruned(copy.deepcopy(model), [History(**h) for h in saved["histories"]])
        load_masked_state_dict(result.model, saved["state"])  # the saved masks: no need to score the weights again
        return result
    result = one_shot(model, sparsity, make_masks)
    result.histories.append(finetune(result.model, data, config, progress=progress,
                                     desc=f"fine-tuning at {sparsity:.0%}"))
    return result


def iterative_pruning(model: nn.Module, data: DataSplits, sparsity: float, rounds: int, make_masks: MaskFn,
                      config_per_round: TrainConfig, progress: bool = True) -> Pruned:
    """Prune the same fraction of survivors ``rounds`` times, fine-tuning after each round."""
    pruned = copy.deepcopy(model)
    result = Pruned(pruned)
    for r, target in enumerate(iterative_sparsities(sparsity, rounds), start=1):
        apply_masks(pruned, make_masks(pruned, target))
        result.histories.append(finetune(pruned, data, config_per_round, progress=progress,
                                         desc=f"round {r}/{rounds}: {target:.1%}"))
    return result


def gradual_pruning(model: nn.Module, data: DataSplits, sparsity: float, make_masks: MaskFn, config: TrainConfig,
                    end_fraction: float = 0.75, updates: int = 20, begin_fraction: float = 0.0,
                    extra_hooks: Sequence[Hook | StepFunction] = (), progress: bool = True) -> Pruned:
    """AGP (Zhu & Gupta 2017): raise the sparsity from 0 along a cubic curve while training.

    The sparsity starts rising after ``begin_fraction`` of the training steps
    and reaches its target after ``end_fraction`` of them, in ``updates`` mask
    updates; the rest of training recovers. From a trained network (chapter 1)
    this is gradual pruning while fine-tuning; from a fresh one (chapter 6) it
    is "train dense, prune as you go" in one run. ``extra_hooks`` run after
    the pruner in every phase (e.g. a :class:`~course_lib.sparse.tracking.MaskTracker`).
    """
    if not 0.0 <= begin_fraction < end_fraction <= 1.0:
        raise ValueError(f"need 0 <= begin_fraction < end_fraction <= 1, got {begin_fraction} and {end_fraction}.")
    pruned = copy.deepcopy(model)
    steps = config.total_steps(len(data.train))
    begin, end = round(begin_fraction * steps), max(1, round(end_fraction * steps))
    pruner = AGP(make_masks, sparsity, update_every=max(1, (end - begin) // updates), begin_step=begin, end_step=end)
    apply_masks(pruned, make_masks(pruned, 0.0))  # attach masks from the start (nothing pruned yet)
    history = finetune(pruned, data, config, extra_hooks=[pruner, *extra_hooks], progress=progress,
                       desc=f"AGP to {sparsity:.0%}")
    return Pruned(pruned, [history], pruner.history)


def sensitivity_scan(model: nn.Module, dataset: TensorDataset, sparsities: Iterable[float],
                     layers: Iterable[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """Prune one layer at a time (magnitude, no retraining) and measure accuracy on ``dataset``.

    Use the **validation** split: the scan is used to choose per-layer
    sparsities, and choices must not see the test set. Returns one row per
    (layer, sparsity) with the accuracy in percent.
    """
    names = [n.removesuffix(".weight") for n in prunable_weights(model)] if layers is None else list(layers)
    sparsities = list(sparsities)
    rows = []
    with tqdm(total=len(names) * len(sparsities), desc="sensitivity scan", disable=not progress, leave=False) as bar:
        for name in names:
            others = [n for n in (k.removesuffix(".weight") for k in prunable_weights(model)) if n != name]
            for s in sparsities:
                probe = one_shot(model, s, magnitude("local", exclude=others)).model
                rows.append({"layer": name, "sparsity": s, "accuracy": evaluate(probe, dataset)})
                bar.update(1)
    return pd.DataFrame(rows)


def sparsities_from_scan(scan: pd.DataFrame, weights: Mapping[str, int], target: float) -> dict[str, float]:
    """Per-layer sparsities read off a sensitivity scan, reaching at least ``target`` overall.

    Han et al. (2015) chose each layer's rate from its sensitivity curve by hand; this makes the choice a rule
    that prices a weight, not a layer. Every layer starts dense. At each step, the layer whose next scanned
    sparsity costs the least validation accuracy *per weight removed* moves to it, until the layers together
    (weighted by their ``weights`` counts) reach ``target``. A small layer's steps remove few weights, so it is
    pruned only where its curve is flat; a large one, where pruning is cheap per weight, takes most of the zeros.
    The rule reads each layer's drop off the scan as if the layers' drops added up; whether they do is an
    experiment (chapter 1 measures it). The result may overshoot the target by one step of the scan's grid:
    compare at the overall sparsity it reaches.
    """
    check_sparsity(target, "target")
    dense = scan[scan["sparsity"] == 0].set_index("layer")["accuracy"]
    if set(dense.index) != set(weights):
        raise ValueError(f"the scan covers {sorted(dense.index)} at sparsity 0, but weights are given for "
                         f"{sorted(weights)}: scan every layer, starting at sparsity 0.")
    curves = {layer: rows.sort_values("sparsity")[["sparsity", "accuracy"]].to_numpy().tolist()
              for layer, rows in scan.groupby("layer")}
    at = {layer: 0 for layer in weights}  # each layer's position on its scanned grid
    total = sum(weights.values())

    def overall() -> float:
        return sum(curves[layer][at[layer]][0] * n for layer, n in weights.items()) / total

    while overall() < target - 1e-9:
        def price(layer: str) -> float:  # accuracy lost per weight removed by the layer's next step
            (s_now, acc_now), (s_next, acc_next) = curves[layer][at[layer]], curves[layer][at[layer] + 1]
            return (acc_now - acc_next) / ((s_next - s_now) * weights[layer])
        movable = [layer for layer in weights if at[layer] + 1 < len(curves[layer])]
        if not movable:
            raise ValueError(f"the scan's largest sparsities do not reach {target:.1%} overall: scan higher sparsities.")
        at[min(movable, key=price)] += 1
    return {layer: float(curves[layer][at[layer]][0]) for layer in weights}


def per_layer(sparsities: Mapping[str, float]) -> MaskFn:
    """A ``make_masks`` function that prunes each layer by magnitude to its own sparsity (the overall one is ignored)."""
    top = max(sparsities.values())
    if top <= 0:
        raise ValueError("per_layer needs at least one layer with a sparsity above 0.")

    def make_masks(model: nn.Module, _: float) -> Masks:
        return unstructured_masks(model, top, scope="local", rate_multipliers={n: s / top for n, s in sparsities.items()})
    return _described(make_masks, {"per_layer": dict(sparsities)})


def random_like(make_masks: MaskFn, seed: int = 1) -> MaskFn:
    """A ``make_masks`` function that keeps as many weights in every layer as ``make_masks`` would, chosen at random.

    The control that separates *where* a method puts its zeros (how many per layer) from *which* weights it
    picks within a layer: a method that beats this control chose well within the layers."""
    def make(model: nn.Module, sparsity: float) -> Masks:
        return random_masks_like(make_masks(model, sparsity), seed=seed)
    copied = getattr(make_masks, "settings", None)
    return make if copied is None else _described(make, {"random_like": copied, "seed": seed})


def finetune_epochs(epochs: int) -> int:
    """The fine-tuning share of a budget of ``epochs``: a third, at least one."""
    if epochs < 2:
        raise ValueError(f"a budget of dense training plus fine-tuning needs at least 2 epochs, got {epochs}.")
    return max(1, round(epochs / 3))


def budgets(epochs: int, seed: int = 0) -> dict[str, TrainConfig]:
    """The course recipe three ways: ``dense`` + ``finetune`` (magnitude pruning) and ``dpp`` (all ``epochs``)."""
    tune = finetune_epochs(epochs)
    return {"dense": TrainConfig(epochs=epochs - tune, seed=seed), "finetune": TrainConfig(epochs=tune, seed=seed),
            "dpp": TrainConfig(epochs=epochs, seed=seed)}
