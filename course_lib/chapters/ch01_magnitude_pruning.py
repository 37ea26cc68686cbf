"""Chapter 1's budget, its comparison of pruning schedules, and the arithmetic of a starved output layer.

Most of chapter 1's experiments are short enough to stay in the notebook, built from
:mod:`course_lib.pruning.procedures` (fine-tuning runs through the run cache); what differs between the profiles
is how much accuracy a network trained in fewer epochs may lose.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from course_lib.cache import cached_run, trained_baseline, weights_digest
from course_lib.data import DataSplits
from course_lib.experiments import over_seeds
from course_lib.profiles import Profile, by_profile
from course_lib.pruning.procedures import (finetune, gradual_pruning, iterative_pruning, magnitude,
                                           prune_and_finetune)
from course_lib.training import TrainConfig, evaluate


@dataclass(frozen=True)
class Budget:
    """Chapter 1's bars in one profile.

    Attributes:
        tolerance: test-accuracy points the schedule chosen on validation may lose at >= 90 % sparsity
            (claim 1; Han et al. lost none on MNIST). The quick profile's network trains on fewer images
            for fewer epochs and recovers less in its short fine-tuning.
    """

    tolerance: float


BUDGETS = {"quick": Budget(tolerance=1.5), "full": Budget(tolerance=1.0)}


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def class_coverage(kept: int, classes: int, inputs: int) -> tuple[float, float]:
    """When ``kept`` weights of a ``classes`` x ``inputs`` output layer are chosen at random: the chance that every
    class keeps at least one input, and how many classes keep none on average (exact, by counting).

    A class with no input left can only be guessed from its bias. Counting the draws of ``kept`` positions that
    miss a given set of ``j`` classes, and adding and subtracting them over every such set (inclusion-exclusion),
    gives the first number; the second is ``classes`` times the chance that one given class is missed.
    """
    if not 0 <= kept <= classes * inputs:
        raise ValueError(f"kept must lie between 0 and {classes * inputs} (the layer's weights), got {kept}.")

    def draws_missing(empty: int) -> int:  # draws of `kept` positions among the classes that are not `empty`
        return math.comb((classes - empty) * inputs, kept)

    covered = sum((-1) ** j * math.comb(classes, j) * draws_missing(j) for j in range(classes + 1)) / draws_missing(0)
    return covered, classes * draws_missing(1) / draws_missing(0)


def units_cut_off(layer_masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many units of a fully connected network a set of masks cuts off, layer by layer.

    ``layer_masks`` maps the weight names of the network's linear layers, in the order the input flows through them,
    to 0/1 masks of shape (outputs, inputs). A unit whose row of its layer's mask is empty has **no input** left: it
    sees only its bias (in the last layer that is a class that can only be guessed). A hidden unit whose column of
    the *next* layer's mask is empty has **no output** left: whatever it computes, nothing downstream reads it. Both
    are weights the budget paid for and the network cannot use.
    """
    names = list(layer_masks)
    counts: dict[str, int] = {}
    for i, name in enumerate(names):
        layer = name.removesuffix(".weight")
        counts[f"{layer}: no input"] = int((layer_masks[name].sum(dim=1) == 0).sum())
        if i + 1 < len(names):
            counts[f"{layer}: no output"] = int((layer_masks[names[i + 1]].sum(dim=0) == 0).sum())
    return counts


def schedules_compared(dense: nn.Module, data: DataSplits, target: float, rounds: int, config: TrainConfig,
                       per_round: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Section 3's comparison, through the run cache: global magnitude pruning of ``dense`` to ``target`` one-shot,
    in ``rounds`` rounds (each fine-tuned with ``per_round``) and gradually (AGP), each with ``config``'s fine-tuning
    budget; and the dense network fine-tuned as long, the fair reference.

    Returns ``rows`` (by schedule: sparsity, fine-tuning steps, validation and test accuracy), the steps of one
    iterative round and of the AGP run, AGP's (step, sparsity) updates, and ``longer_test``.
    """
    def compute() -> dict[str, Any]:
        iterative = f"iterative ({rounds} rounds)"
        runs = {"one-shot + fine-tune": prune_and_finetune(dense, data, target, magnitude("global"), config,
                                                           progress=progress),
                iterative: iterative_pruning(dense, data, target, rounds, magnitude("global"), per_round,
                                             progress=progress),
                "gradual (AGP)": gradual_pruning(dense, data, target, magnitude("global"), config, progress=progress)}
        longer = copy.deepcopy(dense)
        finetune(longer, data, config, progress=progress, desc="dense, fine-tuned as long")
        return {"rows": {name: {"sparsity (%)": 100 * r.sparsity, "fine-tuning steps": sum(h.steps for h in r.histories),
                                "validation (%)": evaluate(r.model, data.val), "test (%)": evaluate(r.model, data.test)}
                         for name, r in runs.items()},
                "round_steps": runs[iterative].histories[0].steps, "agp_steps": runs["gradual (AGP)"].histories[0].steps,
                "agp_schedule": runs["gradual (AGP)"].schedule, "longer_test": evaluate(longer, data.test)}

    return cached_run("ch1-schedules", {"dense": weights_digest(dense), "data": data.key(), "target": target,
                                        "rounds": rounds, "config": config, "per_round": per_round}, compute)


CLAIM_SPARSITY = 0.98  # claim 2: where the scopes are compared over seeds


def claim_scopes(seed: int) -> dict[str, Any]:
    """Claim 2's three ways to choose the zeros: global and local magnitude, and random with local's per-layer
    counts (drawn with ``seed``)."""
    return {"global": magnitude("global"), "local": magnitude("local"),
            "random, local's sizes": magnitude("local", criterion="random", seed=seed)}


def scope_runs(data: DataSplits, dense_config: TrainConfig, finetune_config: TrainConfig, sparsity: float, seed: int,
               progress: bool = True) -> list[dict[str, object]]:
    """One seed of claim 2: LeNet-300-100 trained from ``seed`` (the cached baseline), pruned to ``sparsity`` by each
    of :func:`claim_scopes` and fine-tuned alike; one row per scope with its test accuracy.

    Seed 0 is the chapter's own dense network and runs, so it comes from the run cache.
    """
    dense = trained_baseline("lenet300", data, replace(dense_config, seed=seed), progress=progress).model
    tuning = replace(finetune_config, seed=seed)
    return [{"scope": name, "test_acc": evaluate(prune_and_finetune(dense, data, sparsity, make, tuning,
                                                                    progress=progress, cached=True).model, data.test)}
            for name, make in claim_scopes(seed).items()]


def scopes_over_seeds(profile: Profile, data: DataSplits, dense_config: TrainConfig, finetune_config: TrainConfig,
                      progress: bool = True) -> pd.DataFrame:
    """:func:`scope_runs` at :data:`CLAIM_SPARSITY` for every seed of the profile, through the run cache: one row
    per seed and scope."""
    return over_seeds("ch1-scopes", {"data": data.key(), "dense": dense_config, "finetune": finetune_config,
                                     "sparsity": CLAIM_SPARSITY},
                      lambda seed: scope_runs(data, dense_config, finetune_config, CLAIM_SPARSITY, seed, progress),
                      profile.seeds(), progress=progress, code=__name__)


def schedule_loss(rows: dict[str, dict[str, float]], dense_test: float, longer_test: float) -> dict[str, object]:
    """Claim 1's number for one seed: the schedule chosen on validation among :func:`schedules_compared`'s ``rows``,
    its test accuracy, and the test points it lost against the better of the dense network as trained and the
    dense network fine-tuned as long (extra epochs must not count as pruning's gain)."""
    chosen = max(rows, key=lambda name: rows[name]["validation (%)"])
    return {"chosen": chosen, "test_acc": rows[chosen]["test (%)"],
            "loss": max(dense_test, longer_test) - rows[chosen]["test (%)"]}


def schedules_over_seeds(profile: Profile, data: DataSplits, dense_config: TrainConfig, target: float, rounds: int,
                         config: TrainConfig, per_round: TrainConfig, progress: bool = True) -> pd.DataFrame:
    """Claim 1 over the profile's seeds: for each, LeNet-300-100 trained from that seed (the cached baseline) goes
    through :func:`schedules_compared`, and :func:`schedule_loss` reads the chosen schedule's loss. One row per seed.

    Seed 0 is the chapter's own dense network and schedules, so it comes from the run cache.
    """
    def one_seed(seed: int) -> dict[str, object]:
        dense = trained_baseline("lenet300", data, replace(dense_config, seed=seed), progress=progress).model
        compared = schedules_compared(dense, data, target, rounds, replace(config, seed=seed),
                                      replace(per_round, seed=seed), progress=progress)
        return schedule_loss(compared["rows"], evaluate(dense, data.test), compared["longer_test"])

    parts = {"data": data.key(), "dense": dense_config, "target": target, "rounds": rounds, "finetune": config,
             "per_round": per_round}
    return over_seeds("ch1-schedules-over-seeds", parts, one_seed, profile.seeds(), progress=progress, code=__name__)
