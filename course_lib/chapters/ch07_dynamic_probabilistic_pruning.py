"""Chapter 7's experiments: DPP against magnitude pruning, on one matched budget per comparison.

**The budget.** Every LeNet-300-100 run trains for ``budget(profile).epochs``
epochs in total. Magnitude pruning spends them as chapter 1 does - dense
training, then one-shot pruning and fine-tuning for the last third
(:func:`course_lib.pruning.procedures.budgets`); DPP spends all of them learning
weights and mask together from a fresh network (as the DPP paper trains), then
keeps the deterministic top-k. SmallVGG-BN runs follow the same split with
``budget(profile).vgg_epochs``. The DPP settings (temperatures, the logits'
learning rate) are the course's, in :mod:`course_lib.dpp.pruner`.

**What every method prunes.** LeNet's classifier (``net.fc3``, 1,000 of
266,200 weights) stays dense for every method: at 95 % a per-layer rule would
leave each class 5 inputs, and the comparison would measure that starvation,
not the choice of mask. SmallVGG's classifier stays dense too.

====================  ================================================================
``global``            one magnitude ranking over all pruned layers (chapter 1)
``local``             the same share of every layer, by magnitude (chapter 1)
``row``               the same k of every output unit, by magnitude: DPP's structure
``DPP``               learned k-of-n masks (weight granularity)
``DPP, late start``   DPP learning its masks on the magnitude rivals' trained dense network, for their fine-tuning
                      part of the budget: the magnitude pipeline with a learned mask
``random row``        a random k of every output unit, fixed, trained from scratch: DPP without the learning
``half-width``        SmallVGG-BN with half the filters in every layer, trained from scratch: what a fixed
                      k-of-n feature maps per layer amounts to
``ASP 2:4``           one-shot magnitude 2:4 of the trained network, then retrained (NVIDIA's recipe, equal budget)
``DPP 2:4``           DPP with tiles of 4 keeping 2
====================  ================================================================
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from course_lib.data import DataSplits, load_splits
from course_lib.dpp.masks import is_n_m_sparse
from course_lib.cache import trained_baseline
from course_lib.dpp.pruner import DPP, LOGITS_LR, dpp_hook, exactly_k_per_row, train_dpp
from course_lib.experiments import cache_command, over_seeds
from course_lib.masks import Masks, apply_masks, get_masks, mask_sparsity, weight_masks
from course_lib.models import LENET_CLASSIFIER, VGG_CLASSIFIER, build_model
from course_lib.profiles import Profile, by_profile
from course_lib.pruning.procedures import MaskFn, budgets, finetune, magnitude, units
from course_lib.pruning.selection import n_of_m_keep_mask, n_of_m_masks, random_scores, row_keep_mask
from course_lib.masks import prunable_weights
from course_lib.quantization import add_fake_quantization
from course_lib.training import TrainConfig, evaluate, train

MAGNITUDE_SCOPES = ("global", "local", "row")
QUANTIZED_SPARSITY = 0.9  # where the chapter compares float32, post-training and joint quantization
QUANTIZED_BITS = (8, 4, 3, 2)  # post-training quantization widths tried on every pruned LeNet (2 bits: -1, 0, 1)


@dataclass(frozen=True)
class Budget:
    """What chapter 7 spends in one profile.

    Attributes:
        train_size: training images of every run.
        epochs: the budget of every LeNet-300-100 run (dense training plus fine-tuning for
            magnitude pruning, all of it for DPP).
        vgg_epochs: the same budget for the SmallVGG-BN runs.
        sparsities: where DPP is compared with magnitude pruning. ``quick`` gives DPP under 300
            steps, too few for its masks to settle at 95 % (it trailed per-row magnitude by
            1.5-2.5 points there while the chapter was written), so it compares at 80 and 90 %.
        logits_lrs: the regime experiment's logits learning rates (how fast the masks can commit), at
            :data:`QUANTIZED_SPARSITY`; the chapter's own rate, ``pruner.LOGITS_LR``, is among them.
        n_m: the N:M patterns of section 4, as (kept n, group m): 2:4 is the one hardware runs; 1:4 is harder
            (75 %) and shows whether learning the pattern matters more when fewer weights survive.
    """

    train_size: int
    epochs: int
    vgg_epochs: int
    sparsities: tuple[float, ...]
    logits_lrs: tuple[float, ...]
    n_m: tuple[tuple[int, int], ...]


BUDGETS = {"quick": Budget(train_size=6_000, epochs=6, vgg_epochs=2, sparsities=(0.8, 0.9), logits_lrs=(0.1, 0.3),
                            n_m=((2, 4),)),
           "full": Budget(train_size=20_000, epochs=6, vgg_epochs=4, sparsities=(0.8, 0.9, 0.95),
                          logits_lrs=(0.03, 0.1, 0.2, 0.3, 1.0), n_m=((2, 4), (1, 4)))}


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def dpp_splits(profile: Profile) -> DataSplits:
    """The profile's data with the chapter's ``train_size`` training images (the same validation and test sets)."""
    return load_splits(profile, train_size=budget(profile).train_size)


def _row(method: str, sparsity: float, model: nn.Module, data: DataSplits, started: float,
         **extra: Any) -> dict[str, Any]:
    """One result: accuracies, the sparsity the masks really have, the seconds spent and the masks (as booleans)."""
    masks = weight_masks(get_masks(model))
    return {"method": method, "sparsity": sparsity, "val_acc": evaluate(model, data.val),
            "test_acc": evaluate(model, data.test), "measured_sparsity": mask_sparsity(masks),
            "seconds": time.perf_counter() - started, "masks": {n: m.bool().cpu() for n, m in masks.items()},
            **extra}


def _magnitude_row(dense: nn.Module, data: DataSplits, config: TrainConfig, sparsity: float, method: str,
                   make_masks: MaskFn) -> tuple[dict[str, Any], nn.Module]:
    started = time.perf_counter()
    pruned = copy.deepcopy(dense)
    apply_masks(pruned, make_masks(pruned, sparsity))
    finetune(pruned, data, config, progress=False)
    return _row(method, sparsity, pruned, data, started), pruned


def _dpp_row(method: str, sparsity: float, data: DataSplits, config: TrainConfig, hook: DPP,
             model_name: str = "lenet300") -> tuple[dict[str, Any], nn.Module]:
    started = time.perf_counter()
    model = train_dpp(build_model(model_name, seed=config.seed), data, config, hook)
    row = _row(method, sparsity, model, data, started, exact_k=exactly_k_per_row(model, hook), trace=hook.trace)
    return row, model


def _dense(model_name: str, data: DataSplits, config: TrainConfig) -> nn.Module:
    """The dense network of ``config`` (the course's one cached dense trainer: the capstone shares it)."""
    return trained_baseline(model_name, data, config, progress=False).model


def post_training_quantized(model: nn.Module, data: DataSplits, bits: Sequence[int] = QUANTIZED_BITS) -> dict[int, float]:
    """Test accuracy of copies of a trained, pruned ``model`` with every pruned layer rounded to each of ``bits``."""
    accuracies = {}
    for width in bits:
        rounded = copy.deepcopy(model)
        add_fake_quantization(rounded, width, exclude=LENET_CLASSIFIER)
        accuracies[width] = evaluate(rounded, data.test)
    return accuracies


def _scratch_row(method: str, sparsity: float, data: DataSplits, config: TrainConfig, make_masks: MaskFn,
                 model_name: str = "lenet300") -> tuple[dict[str, Any], nn.Module]:
    """A fixed mask (``make_masks``) on ``config.seed``'s initial weights, trained for all of ``config``: the way
    every random control of the chapter trains, as DPP does, so that only the choice of mask differs."""
    started = time.perf_counter()
    model = build_model(model_name, seed=config.seed)
    apply_masks(model, make_masks(model, sparsity))
    finetune(model, data, config, progress=False)
    return _row(method, sparsity, model, data, started), model


def _random_row_run(data: DataSplits, config: TrainConfig, sparsity: float) -> tuple[dict[str, Any], nn.Module]:
    """DPP's structure without its learning: a random k of every output unit's inputs, fixed, trained from the
    same initial weights and for the same epochs as DPP. What DPP gains over it is what learning the mask bought."""
    return _scratch_row("random row", sparsity, data, config,
                        magnitude("row", criterion="random", exclude=LENET_CLASSIFIER, seed=config.seed))


def weight_runs(data: DataSplits, epochs: int, sparsities: Sequence[float], seed: int) -> list[dict[str, Any]]:
    """Magnitude (global, local, row) from one dense network per seed, DPP from scratch, and a random k per neuron
    trained from scratch (DPP's control), at each sparsity.

    One more row separates DPP's *mask* from DPP's *training*: ``DPP's mask, fine-tuned`` puts the mask DPP
    learned (frozen) on the magnitude rivals' dense network and fine-tunes it exactly as per-neuron magnitude is
    fine-tuned. Same weights, same structure (k per neuron), same schedule: only which k differs. If it matches
    per-neuron magnitude, DPP's mask was as good and its gap comes from how DPP trains; if it trails, the mask
    itself is worse. The transplant is handicapped (the magnitude mask was read off these very weights, DPP's was
    learned with other ones), so a floor comes with it: ``random row, fine-tuned``, a random k per neuron on the
    same weights, fine-tuned alike. Where DPP's mask falls between that floor and per-neuron magnitude says how
    much of a good mask for these weights it carries.

    Every row also holds the test accuracy after post-training quantization
    (``quantized``, by bits), for the joint-quantization comparison.
    """
    plan = budgets(epochs, seed)
    started = time.perf_counter()
    ceiling = _dense("lenet300", data, plan["dpp"])  # dense for the whole budget: the ceiling
    rows = [{**_row("dense", 0.0, ceiling, data, started), "quantized": post_training_quantized(ceiling, data)}]
    dense = _dense("lenet300", data, plan["dense"])
    for sparsity in sparsities:
        for scope in MAGNITUDE_SCOPES:
            row, model = _magnitude_row(dense, data, plan["finetune"], sparsity, scope, magnitude(scope, exclude=LENET_CLASSIFIER))
            rows.append({**row, "quantized": post_training_quantized(model, data)})
        row, model = _dpp_row("DPP", sparsity, data, plan["dpp"], dpp_hook(sparsity, data, plan["dpp"], seed, LENET_CLASSIFIER))
        rows.append({**row, "quantized": post_training_quantized(model, data)})
        learned = {name: mask.float() for name, mask in row["masks"].items()}  # DPP's frozen top-k
        rows.append(_magnitude_row(dense, data, plan["finetune"], sparsity, "DPP's mask, fine-tuned",
                                   lambda model, _: {n: m.to(next(model.parameters()).device) for n, m in learned.items()})[0])
        rows.append(_magnitude_row(dense, data, plan["finetune"], sparsity, "random row, fine-tuned",
                                   magnitude("row", criterion="random", exclude=LENET_CLASSIFIER, seed=seed))[0])
        rows.append(_random_row_run(data, plan["dpp"], sparsity)[0])
    return rows


def logits_lr_runs(data: DataSplits, epochs: int, sparsity: float, logits_lrs: Sequence[float],
                   seed: int) -> list[dict[str, Any]]:
    """DPP at ``sparsity`` with each of ``logits_lrs`` for its logits (the weights' recipe unchanged). One seed.

    The logits' rate sets how fast the sampled masks stop changing: a large one decides the mask in the first
    steps, while the weights are still young (an *early* pruning method, in chapter 4's terms); a small one leaves
    it open longer. Each row keeps its confidence trace.
    """
    config = budgets(epochs, seed)["dpp"]
    rows = []
    for rate in logits_lrs:
        hook = dpp_hook(sparsity, data, config, seed, LENET_CLASSIFIER, logits_lr=rate)
        row, _ = _dpp_row("DPP", sparsity, data, config, hook)
        rows.append({**row, "logits_lr": rate})
    return rows


def logits_lr_experiment(profile: Profile, data: DataSplits, progress: bool = True) -> pd.DataFrame:
    """The regime experiment of the profile, through the run cache: :func:`logits_lr_runs` at
    :data:`QUANTIZED_SPARSITY` for every rate of ``budget(profile).logits_lrs`` but the chapter's own
    (``pruner.LOGITS_LR``, whose runs section 2 has), every seed. The notebook and ``python -m
    course_lib.chapters.ch07_dynamic_probabilistic_pruning`` share its cache entries (the key names this module's
    code, not the caller's)."""
    plan = budget(profile)
    rates = [rate for rate in plan.logits_lrs if rate != LOGITS_LR]
    return over_seeds("ch7-logits-lr", {"data": data.key(), "epochs": plan.epochs, "sparsity": QUANTIZED_SPARSITY,
                                        "rates": rates},
                      lambda seed: logits_lr_runs(data, plan.epochs, QUANTIZED_SPARSITY, rates, seed),
                      profile.seeds(), progress=progress, code=__name__)


def late_dpp_run(data: DataSplits, epochs: int, sparsity: float, seed: int) -> dict[str, Any]:
    """DPP started late: the magnitude rivals' dense network (trained for their dense part of the budget), then DPP
    learning its masks on those trained weights for the rest (their fine-tuning part). One seed.

    This is the magnitude pipeline with the one-shot |w| mask replaced by a learned one, on the same budget. If
    deciding the mask while the weights are young is what costs DPP against per-neuron magnitude, starting late
    should close that gap (with fewer steps to learn the mask in: a late start that still trails says less).
    """
    plan = budgets(epochs, seed)
    started = time.perf_counter()
    model = copy.deepcopy(_dense("lenet300", data, plan["dense"]))
    hook = dpp_hook(sparsity, data, plan["finetune"], seed, LENET_CLASSIFIER)
    model = train_dpp(model, data, plan["finetune"], hook)
    return _row("DPP, late start", sparsity, model, data, started, exact_k=exactly_k_per_row(model, hook),
                trace=hook.trace)


def late_dpp_experiment(profile: Profile, data: DataSplits, progress: bool = True) -> pd.DataFrame:
    """:func:`late_dpp_run` at :data:`QUANTIZED_SPARSITY` for every seed, through the run cache (code-keyed)."""
    plan = budget(profile)
    return over_seeds("ch7-late-dpp", {"data": data.key(), "epochs": plan.epochs, "sparsity": QUANTIZED_SPARSITY},
                      lambda seed: [late_dpp_run(data, plan.epochs, QUANTIZED_SPARSITY, seed)],
                      profile.seeds(), progress=progress, code=__name__)


def random_n_of_m_masks(model: nn.Module, n: int, m: int, seed: int, exclude: Sequence[str] = LENET_CLASSIFIER) -> Masks:
    """A random ``n`` of every ``m`` consecutive inputs of each prunable weight: the N:M pattern without a choice."""
    scores = random_scores(model, list(prunable_weights(model, exclude)), seed)
    return {name: n_of_m_keep_mask(score, n, m) for name, score in scores.items()}


def n_m_runs(data: DataSplits, epochs: int, seed: int, n: int = 2, m: int = 4) -> list[dict[str, Any]]:
    """N:M four ways at the same 1 - n/m sparsity: ASP (magnitude N:M + retraining), DPP with tiles, unstructured
    (global magnitude + retraining), and a random N:M mask trained from scratch for DPP's whole budget (what the
    pattern alone gives, without choosing which n). Every row names its pattern (``pattern``, e.g. "2:4")."""
    plan = budgets(epochs, seed)
    sparsity = 1.0 - n / m
    dense = _dense("lenet300", data, plan["dense"])
    rows = [_magnitude_row(dense, data, plan["finetune"], sparsity, f"ASP {n}:{m}",
                           lambda model, _: n_of_m_masks(model, n, m, exclude=LENET_CLASSIFIER))[0],
            _magnitude_row(dense, data, plan["finetune"], sparsity, "unstructured (global)",
                           magnitude("global", exclude=LENET_CLASSIFIER))[0],
            _dpp_row(f"DPP {n}:{m}", sparsity, data, plan["dpp"], dpp_hook(sparsity, data, plan["dpp"], seed, LENET_CLASSIFIER, tile=m))[0]]
    rows.append(_scratch_row(f"random {n}:{m}", sparsity, data, plan["dpp"],
                             lambda model, _: random_n_of_m_masks(model, n, m, seed))[0])
    for row in rows:
        row["is_n_m"] = all(is_n_m_sparse(mask, n, m) for mask in row["masks"].values())
        row["pattern"] = f"{n}:{m}"
    return rows


def n_m_experiment(profile: Profile, data: DataSplits, progress: bool = True) -> pd.DataFrame:
    """:func:`n_m_runs` for every pattern of ``budget(profile).n_m`` and every seed, through the run cache."""
    plan = budget(profile)
    return over_seeds("ch7-n-m", {"data": data.key(), "epochs": plan.epochs, "patterns": plan.n_m},
                      lambda seed: [row for n, m in plan.n_m for row in n_m_runs(data, plan.epochs, seed, n, m)],
                      profile.seeds(), progress=progress, code=__name__)


def distinct_values(model: nn.Module) -> int:
    """The largest number of distinct values in any pruned layer's (effective) weight."""
    return max(int(torch.unique(layer.weight.detach()).numel()) for layer in prunable_weights(model, LENET_CLASSIFIER).values())


def joint_quantization_run(data: DataSplits, epochs: int, sparsity: float, seed: int, bits: int = 8) -> dict[str, Any]:
    """DPP trained through a ``bits``-bit fake quantizer from the first step (joint pruning and quantization)."""
    config = budgets(epochs, seed)["dpp"]
    row, model = _dpp_row(f"DPP + {bits}-bit, jointly", sparsity, data, config,
                          dpp_hook(sparsity, data, config, seed, LENET_CLASSIFIER, bits=bits))
    return {**row, "bits": bits, "distinct": distinct_values(model)}


def kernel_masks(model: nn.Module, sparsity: float, criterion: str, seed: int,
                 exclude: Sequence[str] = VGG_CLASSIFIER) -> Masks:
    """Keep ``keep_per_row(sparsity, n)`` of the n input kernels (3x3) of every filter, as kernel DPP does:
    ``criterion`` "l1" keeps the largest kernels by sum of |w|, "random" a seeded random choice."""
    if criterion not in ("l1", "random"):
        raise ValueError(f"criterion must be 'l1' or 'random', got {criterion!r}.")
    layers = {n: layer for n, layer in prunable_weights(model, exclude).items() if layer.weight.dim() == 4}
    randoms = random_scores(model, list(layers), seed) if criterion == "random" else {}
    masks: Masks = {}
    for name, layer in layers.items():
        w = layer.weight.detach()
        score = w.abs().sum(dim=(2, 3)) if criterion == "l1" else randoms[name][:, :, 0, 0]
        masks[name] = row_keep_mask(score, sparsity, name)[:, :, None, None].expand_as(w).contiguous()
    return masks


def structured_runs(data: DataSplits, epochs: int, sparsity: float, seed: int) -> list[dict[str, Any]]:
    """SmallVGG-BN: dense; L1 filters + fine-tuning; feature-map DPP; kernel DPP; the half-width network from
    scratch; and kernel DPP's two controls: L1 kernels (the k largest kernels of every filter of the dense network,
    fine-tuned) and random kernels (a random k per filter, trained from scratch for the whole budget). One seed.

    Filters of a fresh network are interchangeable, so feature-map DPP's "k of n filters per layer" fixes the
    architecture before training: the ``half-width`` row (every layer's width times 1 - ``sparsity``, trained from
    scratch for the whole budget) is that architecture without the learned choice.

    The feature-map row keeps its ``state_dict`` so that the notebook can
    shrink the network physically and time it.
    """
    plan = budgets(epochs, seed)
    started = time.perf_counter()
    dense = _dense("vgg", data, plan["dpp"])  # the dense reference trains the whole budget
    rows = [_row("dense", 0.0, dense, data, started)]
    filters = _dense("vgg", data, plan["dense"])
    rows.append(_magnitude_row(filters, data, plan["finetune"], sparsity, "L1 filters",
                               units("l1", exclude=VGG_CLASSIFIER))[0])
    for granularity in ("feature_map", "kernel"):
        hook = dpp_hook(sparsity, data, plan["dpp"], seed, VGG_CLASSIFIER, granularity=granularity)
        row, model = _dpp_row(f"DPP ({granularity.replace('_', '-')})", sparsity, data, plan["dpp"], hook, "vgg")
        if granularity == "feature_map":
            row["state_dict"] = {n: t.cpu() for n, t in model.state_dict().items()}
        rows.append(row)
    started = time.perf_counter()
    widths = [m.out_channels for m in build_model("vgg").modules() if isinstance(m, nn.Conv2d)]
    stages = tuple(max(1, round((1.0 - sparsity) * w)) for w in widths)
    narrow = build_model("vgg", seed=seed, stages=stages)
    train(narrow, data, plan["dpp"], progress=False)
    rows.append({"method": "half-width", "sparsity": sparsity, "val_acc": evaluate(narrow, data.val),
                 "test_acc": evaluate(narrow, data.test), "measured_sparsity": float("nan"),
                 "seconds": time.perf_counter() - started, "masks": {}, "stages": stages})
    rows.append(_magnitude_row(filters, data, plan["finetune"], sparsity, "L1 kernels",
                               lambda model, s: kernel_masks(model, s, "l1", seed))[0])
    rows.append(_scratch_row("random kernels", sparsity, data, plan["dpp"],
                             lambda model, s: kernel_masks(model, s, "random", seed), "vgg")[0])
    return rows


STRUCTURED_SPARSITY = 0.5  # section 3: half of the filters (feature maps) or of the kernels


def structured_experiment(profile: Profile, data: DataSplits, progress: bool = True) -> pd.DataFrame:
    """:func:`structured_runs` on SmallVGG-BN at :data:`STRUCTURED_SPARSITY` for every seed, through the run cache
    (code-keyed): the notebook and ``python -m course_lib.chapters.ch07_dynamic_probabilistic_pruning`` share its
    entries."""
    epochs = budget(profile).vgg_epochs
    return over_seeds("ch7-structured", {"data": data.key(), "epochs": epochs, "sparsity": STRUCTURED_SPARSITY},
                      lambda seed: structured_runs(data, epochs, STRUCTURED_SPARSITY, seed),
                      profile.seeds(), progress=progress, code=__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the run cache with the longest parts of a cold full-profile chapter: the regime experiments (DPP at
    slower logits rates, DPP started late) and the SmallVGG-BN runs of section 3
    (``python -m course_lib.chapters.ch07_dynamic_probabilistic_pruning --help``)."""
    def fill(profile: Profile) -> pd.DataFrame:
        data = dpp_splits(profile)
        return pd.concat([logits_lr_experiment(profile, data), late_dpp_experiment(profile, data),
                          structured_experiment(profile, data)], ignore_index=True)

    cache_command("Train DPP with slower logits learning rates and DPP started on a trained network (chapter 7's "
                  "regime experiments) and the SmallVGG-BN runs of section 3, and cache the results.", fill, argv)


if __name__ == "__main__":
    main()
