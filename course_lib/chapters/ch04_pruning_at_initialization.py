"""Chapter 4's experiment: Frankle et al. (2021)'s sanity checks of masks found at initialization.

The scores (SNIP, GraSP, SynFlow) live in :mod:`course_lib.pruning.at_init`;
this module trains each method's mask three ways, over seeds, on chapter 3's
recipe and data budget (:mod:`course_lib.chapters.ch03_lottery_tickets`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from course_lib.cache import cached_run
from course_lib.chapters.ch03_lottery_tickets import over_seeds_splits
from course_lib.data import DataSplits
from course_lib.experiments import over_seeds
from course_lib.masks import Masks
from course_lib.models import build_model
from course_lib.profiles import Profile, derive_seed
from course_lib.pruning.at_init import init_masks
from course_lib.pruning.procedures import train_masked
from course_lib.pruning.selection import collapsed_layers, random_masks_like, unstructured_masks
from course_lib.training import TrainConfig, evaluate, train


SANITY_VARIANTS = ("as found", "shuffled in each layer", "re-initialized")


# The positive control of the sanity checks: a mask that is known to matter. Global magnitude pruning of the
# network trained from theta_0, rewound to theta_0 (a one-shot lottery ticket, chapter 3): shuffling it should hurt.
POSITIVE_CONTROL = "magnitude after training"


def sanity_checks(model_name: str, data: DataSplits, config: TrainConfig, methods: Sequence[str], sparsity: float,
                  seed: int = 0, progress: bool = True) -> list[dict[str, object]]:
    """One seed of Frankle et al. (2021)'s sanity checks for pruning at initialization; one row per (method, variant).

    Each method's mask is trained three ways from the seed's initialization θ₀:
    **as found**; **shuffled in each layer** (the same number of weights per
    layer, at random positions); and **re-initialized** (the mask as found, on
    a fresh θ₀). If the shuffled or re-initialized masks train as well, the
    method chose *how many* weights each layer keeps, not *which* ones.

    A check that never fails proves nothing, so ``methods`` may include
    :data:`POSITIVE_CONTROL`: the global magnitude mask of the network trained
    from θ₀ (one dense training more), rewound to θ₀ — a mask whose positions
    are known to matter (chapter 3), so shuffling it should cost accuracy.
    """
    seeded = replace(config, seed=seed)
    init = build_model(model_name, seed=seeded.seed)
    rows = []
    for method in methods:
        if method == POSITIVE_CONTROL:
            trained = copy.deepcopy(init)
            train(trained, data, seeded, progress=progress, desc=f"seed {seed}: dense, for the positive control")
            found = init_masks(trained, "magnitude", sparsity)
        else:
            found = init_masks(init, method, sparsity, data.train, seed=seeded.seed)
        starts = {"as found": (found, init),
                  "shuffled in each layer": (random_masks_like(found, seed=derive_seed(seed, "shuffled mask")), init),
                  "re-initialized": (found, build_model(model_name, seed=derive_seed(seed, "fresh init")))}
        for variant, (masks, start) in starts.items():
            model = copy.deepcopy(start)
            train_masked(model, masks, data, seeded, progress=progress, desc=f"seed {seed}: {method}, {variant}")
            rows.append({"method": method, "variant": variant, "val_acc": evaluate(model, data.val),
                         "test_acc": evaluate(model, data.test)})
    return rows


SANITY_SPARSITY = 0.9  # where the sanity checks are run (Frankle et al. report several; one keeps the chapter in budget)


def sanity_checks_over_seeds(profile: Profile, config: TrainConfig, methods: Sequence[str],
                             progress: bool = True) -> pd.DataFrame:
    """:func:`sanity_checks` at :data:`SANITY_SPARSITY` for every seed of the profile, on chapter 3's data budget (cached)."""
    splits = over_seeds_splits(profile)
    return over_seeds("ch4-sanity", {"data": splits.key(), "config": config, "sparsity": SANITY_SPARSITY,
                                     "methods": list(methods)},
                      lambda seed: sanity_checks("lenet300", splits, config, methods, SANITY_SPARSITY, seed=seed,
                                                 progress=progress), profile.seeds())


RANDOM_LIKE_SYNFLOW = "random, SynFlow's densities"
RANDOM_UNIFORM = "random, uniform densities"  # every layer at the target sparsity: no score, no allocation


def trained_once(data: DataSplits, config: TrainConfig, sparsities: Sequence[float],
                 methods: Sequence[str] = ("snip", "grasp", "synflow"), progress: bool = True,
                 ) -> tuple[pd.DataFrame, dict[float, dict[str, Masks]]]:
    """Section 3's runs, through the run cache: each method's mask of θ₀ (``config.seed``'s LeNet-300-100), and two
    random masks — one with SynFlow's per-layer densities, one with every layer at the target sparsity — at each
    sparsity, trained once with ``config``. The two random masks answer "what does the method buy?": against the
    uniform one, a score's allocation of the weights to the layers; against SynFlow's densities, its choice of
    positions within them.

    Returns the table (index method and sparsity: collapsed layers, validation and test accuracy) and the masks,
    by sparsity and method, so that a chapter can show what each kept.
    """
    def compute() -> dict[str, object]:
        init = build_model("lenet300", seed=config.seed)
        rows, found = [], {}
        for s in sparsities:
            found[s] = {m: init_masks(init, m, s, data.train) for m in methods}
            found[s][RANDOM_LIKE_SYNFLOW] = random_masks_like(found[s]["synflow"], seed=1)
            found[s][RANDOM_UNIFORM] = unstructured_masks(init, s, criterion="random", scope="local", seed=1)
            for method, masks in found[s].items():
                model = build_model("lenet300", seed=config.seed)
                train_masked(model, masks, data, config, progress=progress, desc=f"{method} at {s:.1%}")
                rows.append({"method": method, "sparsity": s, "collapsed layers": len(collapsed_layers(masks)),
                             "validation (%)": evaluate(model, data.val), "test (%)": evaluate(model, data.test)})
        return {"rows": rows, "masks": found}

    saved = cached_run("ch4-trained-once", {"data": data.key(), "config": config, "sparsities": list(sparsities),
                                            "methods": list(methods)}, compute)
    return pd.DataFrame(saved["rows"]).set_index(["method", "sparsity"]), saved["masks"]
