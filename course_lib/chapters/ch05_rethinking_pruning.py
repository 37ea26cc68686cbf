"""Chapter 5's experiments: fine-tuned vs Scratch-E vs Scratch-B, for filters, slimming and single weights.

The methods - Scratch-B's budget, re-initialising a pruned architecture,
network slimming - live in :mod:`course_lib.pruning.rethinking` and
:mod:`course_lib.pruning.slimming`. This module runs Liu et al. (2019)'s
comparisons with them on the chapter's recipe and budget; each run returns
plain rows, for :func:`course_lib.experiments.over_seeds` and its cache.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import nn

from course_lib.cache import cached_run, trained_baseline
from course_lib.claims import accuracy_noise
from course_lib.costs import layer_costs, prunable_layers
from course_lib.data import DataSplits, load_splits
from course_lib.masks import apply_masks, get_masks, scale_to_kept_fan_in
from course_lib.models import SmallVGG, build_model
from course_lib.experiments import cache_command, over_seeds
from course_lib.profiles import Profile, by_profile, derive_seed
from course_lib.pruning.procedures import finetune, gradual_pruning, magnitude, one_shot, units
from course_lib.pruning.rethinking import epochs_of, reinitialized, scratch_b_config, total_macs
from course_lib.pruning.slimming import BatchNormL1, batchnorm_scales, slim
from course_lib.pruning.surgery import shrink
from course_lib.training import TrainConfig, evaluate, train
from course_lib.training.config import STEP_DECAY, STEP_MILESTONES


@dataclass(frozen=True)
class Budget:
    """What chapter 5 spends in one profile.

    Attributes:
        train_size: training images of every run (about a dozen networks per seed; a smaller split keeps
            the chapter in budget).
        epochs: epochs of the dense runs (Scratch-E trains as many, Scratch-B more, fine-tuning half).
        keeps: the predefined shares of filters kept per layer for L1-norm filter pruning (the claim is at the
            smallest; ``quick`` runs only that one).
    """

    train_size: int
    epochs: int
    keeps: tuple[float, ...]


BUDGETS = {"quick": Budget(train_size=6_000, epochs=2, keeps=(0.5,)),
           "full": Budget(train_size=12_000, epochs=4, keeps=(0.75, 0.5))}
SLIMMING_STRENGTHS = (0.0, 1e-2, 3e-2, 1e-1)  # network slimming's L1 strengths tried; 0 is the control, not a candidate
PRUNE_FRACTION = 0.5  # slimming removes half of all channels, where its one global threshold puts them
MIN_CHANNELS = 2  # and leaves every layer at least this many


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def rethinking_recipe(profile: Profile, **overrides: object) -> TrainConfig:
    """Liu et al.'s CIFAR recipe, scaled to the profile: SGD at 0.1, momentum 0.9, weight decay 1e-4,
    the learning rate x0.1 at 50 % and 75 % of training."""
    settings = {"epochs": budget(profile).epochs, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                "weight_decay": 1e-4, "schedule": "step", **overrides}
    return TrainConfig(**settings)  # type: ignore[arg-type]


def rethinking_splits(profile: Profile) -> DataSplits:
    """The profile's data with the chapter's ``train_size`` training images (same validation and test sets)."""
    return load_splits(profile, train_size=budget(profile).train_size)


def finetune_config(config: TrainConfig) -> TrainConfig:
    """Fine-tuning after pruning: half the dense epochs (rounded up), starting at the learning rate the dense run
    had at half-time (x0.1 of the peak) and decaying on the same step schedule (x0.1 at 50 % and 75 % of it).

    Li et al. fine-tune at the dense run's *final* rate for 40 epochs; in our few
    epochs that barely moves a network pruned hard, so we restart at a larger rate,
    in the spirit of learning-rate rewinding (Renda et al. 2020): a strong
    fine-tuning baseline for Scratch-E and Scratch-B to be measured against.
    """
    return replace(config, epochs=max(1, math.ceil(config.epochs / 2)), lr=config.lr * STEP_DECAY)


def result_row(method: str, model: nn.Module, data: DataSplits, epochs: float) -> dict[str, object]:
    """One row of a results table: validation and test accuracy, MACs and non-zero weights of ``model``."""
    costs = layer_costs(model)
    return {"method": method, "val_acc": evaluate(model, data.val), "test_acc": evaluate(model, data.test),
            "epochs": epochs, "macs": int(costs.effective_macs.sum()), "weights_kept": int(costs.nonzero.sum())}


def retrain_three_ways(pruned: nn.Module, dense: nn.Module, data: DataSplits, config: TrainConfig, seed: int,
                       cap: float | None = None, progress: bool = True) -> list[dict[str, object]]:
    """Fine-tuned, Scratch-E and Scratch-B of one pruned network (shrunk, or masked), one row each, and two arms
    that keep the pruned weights for as many steps as Scratch-B: fine-tuning (Liu et al.'s check that Scratch-B's
    lead is not just its epochs) and learning-rate rewinding (Renda et al. 2020: Scratch-B's whole schedule, from
    the peak rate, so that the kept weights and the fresh ones differ in nothing else).

    ``config`` is the dense run's; ``epochs`` in the rows counts each method's own
    training (fine-tuning also needed the dense run before it).
    """
    scratch_b = scratch_b_config(config, len(data.train), dense, pruned, cap)
    tunings = {"fine-tuned": replace(finetune_config(config), seed=seed),
               "fine-tuned, as long as Scratch-B": replace(finetune_config(config), epochs=scratch_b.epochs,
                                                           steps=scratch_b.steps, seed=seed),
               "LR-rewound, as long as Scratch-B": replace(scratch_b, seed=seed)}
    rows = []
    for method, tuning in tunings.items():
        tuned = copy.deepcopy(pruned)
        finetune(tuned, data, tuning, progress=progress, desc=method)
        rows.append(result_row(method, tuned, data, epochs_of(tuning, len(data.train))))
    for method, budget in {"Scratch-E": config, "Scratch-B": scratch_b}.items():
        scratch = reinitialized(pruned, seed=derive_seed(seed, "fresh init"))
        finetune(scratch, data, replace(budget, seed=seed), progress=progress, desc=method)
        rows.append(result_row(method, scratch, data, epochs_of(budget, len(data.train))))
    return rows


def dense_baseline(model_name: str, data: DataSplits, config: TrainConfig, seed: int,
                   progress: bool = True) -> nn.Module:
    """The dense network of one seed, trained once with ``config`` and cached."""
    return trained_baseline(model_name, data, replace(config, seed=seed), progress=progress).model


def l1_filter_runs(data: DataSplits, config: TrainConfig, keep_ratios: Sequence[float], seed: int,
                   progress: bool = True) -> list[dict[str, object]]:
    """L1-norm filter pruning (Li et al. 2017) of SmallVGG-BN at predefined per-layer keep ratios,
    then fine-tuned (for half the dense epochs, and as long as Scratch-B), Scratch-E and Scratch-B. One seed."""
    dense = dense_baseline("vgg", data, config, seed, progress)
    rows = [{"keep": 1.0, **result_row("dense", dense, data, float(config.epochs))}]
    for keep in keep_ratios:
        pruned = shrink(one_shot(dense, 1.0 - keep, units("l1", "local")).model)
        rows += [{"keep": keep, **row} for row in retrain_three_ways(pruned, dense, data, config, seed,
                                                                       progress=progress)]
    return rows


def dense_long_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                          progress: bool = True) -> pd.DataFrame:
    """:func:`dense_as_long` at the claim's keep ratio (the smallest), every seed, through the run cache: two rows
    per seed, with ``keep``. The chapter's most expensive control (Scratch-B's steps on the full-width network):
    ``python -m course_lib.chapters.ch05_rethinking_pruning`` fills it, and the notebook shares its cache
    entries."""
    keep = min(budget(profile).keeps)
    dense_shape = build_model("vgg")  # Scratch-B's budget depends on the widths only, not on the trained weights
    pruned_shape = shrink(one_shot(dense_shape, 1.0 - keep, units("l1", "local")).model)
    longer = scratch_b_config(config, len(data.train), dense_shape, pruned_shape)
    return over_seeds("ch5-dense-long", {"data": data.key(), "config": config, "keep": keep},
                      lambda seed: dense_as_long(data, config, longer, keep, seed, progress),
                      profile.seeds(), progress=progress, code=__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the run cache with the chapter's two longest experiments, the long dense control and network slimming
    (``python -m course_lib.chapters.ch05_rethinking_pruning --help``)."""
    def fill(profile: Profile) -> pd.DataFrame:
        data, config = rethinking_splits(profile), rethinking_recipe(profile)
        strength = chosen_strength(strength_table(data, config), accuracy_noise(len(data.val)))
        return pd.concat([dense_long_experiment(profile, data, config),
                          slimming_experiment(profile, data, config, strength)], ignore_index=True)

    cache_command("Train the dense network as long as Scratch-B, then prune and fine-tune it (chapter 5's epochs "
                  "controls), and network slimming's runs over seeds, and cache the results.", fill, argv)


def dense_as_long(data: DataSplits, config: TrainConfig, budget: TrainConfig, keep: float, seed: int,
                  progress: bool = True) -> list[dict[str, object]]:
    """The dense SmallVGG-BN trained for Scratch-B's ``budget`` of steps (its step schedule stretched alike), and
    that longer-trained network pruned to ``keep`` and fine-tuned as usual. Two rows, one seed.

    The first row says how much of Scratch-B's lead over fine-tuning more epochs alone would buy, without any
    pruning. The second asks Liu et al.'s question with a dense network closer to convergence (theirs were
    trained to the end; ours, by default, for a few epochs): does Scratch-B still beat fine-tuning when the
    weights that fine-tuning keeps have had as much training as Scratch-B gets?
    """
    model = build_model("vgg", seed=seed)
    train(model, data, replace(budget, seed=seed), progress=progress, desc="dense, as long as Scratch-B")
    rows = [result_row("dense, as long as Scratch-B", model, data, epochs_of(budget, len(data.train)))]
    pruned = shrink(one_shot(model, 1.0 - keep, units("l1", "local")).model)
    tuning = replace(finetune_config(config), seed=seed)
    finetune(pruned, data, tuning, progress=progress, desc="fine-tuned from the long dense")
    rows.append(result_row("fine-tuned from the long dense", pruned, data, epochs_of(tuning, len(data.train))))
    return [{"keep": keep, **row} for row in rows]


def slimming_trained(data: DataSplits, config: TrainConfig, strength: float, seed: int,
                     progress: bool = True) -> nn.Module:
    """SmallVGG-BN trained with network slimming's L1 penalty on the BatchNorm scales (cached)."""
    def run() -> dict[str, torch.Tensor]:
        model = build_model("vgg", seed=seed)
        train(model, data, replace(config, seed=seed), hooks=[BatchNormL1(strength)], progress=progress,
              desc=f"sparsity training, lambda={strength:g}")
        return {k: v.cpu() for k, v in model.state_dict().items()}

    model = build_model("vgg", seed=seed)
    model.load_state_dict(cached_run("ch5-slimming-trained", {"data": data.key(),
                                                               "config": config, "strength": strength,
                                                               "seed": seed}, run))
    return model.eval()


def choose_strength(data: DataSplits, config: TrainConfig, strengths: Sequence[float], prune_fraction: float,
                    min_channels: int, seed: int = 0, progress: bool = True) -> list[dict[str, object]]:
    """For each L1 strength: validation accuracy after sparsity training, after slimming, and after slimming and
    fine-tuning (the chapter's fine-tuning budget), with the widths the global threshold left (``channels``, e.g.
    ``"6-7-19"``: a layer cut to the floor shows).

    The strength to use is the one whose slimmed network is best on validation
    *after fine-tuning*: the λ that serves the fine-tuned pipeline best, so that
    a strong penalty which damages the network cannot hand Scratch-B a weak
    fine-tuning rival. Chosen on validation, never on the test set.
    """
    rows = []
    for strength in strengths:
        model = slimming_trained(data, config, strength, seed, progress)
        small = slim(model, prune_fraction, min_channels)
        scales = torch.cat(list(batchnorm_scales(model).values()))
        row = {"lambda": strength, "val_acc_trained": evaluate(model, data.val), "val_acc_slimmed": evaluate(small, data.val)}
        finetune(small, data, replace(finetune_config(config), seed=seed), progress=progress,
                 desc=f"fine-tuned, lambda={strength:g}")
        rows.append({**row, "val_acc_finetuned": evaluate(small, data.val),
                     "share_below_0.05": float((scales < 0.05).float().mean()),
                     "macs": total_macs(small), "channels": "-".join(map(str, channels(small).values()))})
    return rows


def strength_table(data: DataSplits, config: TrainConfig, progress: bool = True) -> pd.DataFrame:
    """:func:`choose_strength` over :data:`SLIMMING_STRENGTHS` (seed 0) through the run cache, one row per λ,
    indexed by λ."""
    rows = cached_run("ch5-strengths", {"data": data.key(), "config": config, "strengths": SLIMMING_STRENGTHS,
                                        "prune": PRUNE_FRACTION, "floor": MIN_CHANNELS},
                      lambda: choose_strength(data, config, SLIMMING_STRENGTHS, PRUNE_FRACTION, MIN_CHANNELS,
                                              progress=progress), code=__name__)
    return pd.DataFrame(rows).set_index("lambda")


def chosen_strength(table: pd.DataFrame, noise: float = 0.0) -> float:
    """The candidate λ (λ = 0, ordinary training, is the control) whose slimmed network is best on validation
    after fine-tuning in ``table`` (:func:`strength_table`).

    Candidates within ``noise`` of the best are ties (one seed's validation split cannot order them); among ties,
    a λ whose penalty silenced at least :data:`PRUNE_FRACTION` of the channels (so the cut can take silenced
    channels alone, slimming's principle) comes first, then the better validation accuracy.
    """
    candidates = table.drop(index=0.0)
    best = candidates["val_acc_finetuned"].max()
    ties = candidates[candidates["val_acc_finetuned"] >= best - noise]
    principled = ties[ties["share_below_0.05"] >= PRUNE_FRACTION]
    return float((principled if len(principled) else ties)["val_acc_finetuned"].idxmax())


def slimming_experiment(profile: Profile, data: DataSplits, config: TrainConfig, strength: float,
                        progress: bool = True) -> pd.DataFrame:
    """:func:`slimming_runs` at ``strength`` for every seed, through the run cache (code-keyed): the notebook and
    ``python -m course_lib.chapters.ch05_rethinking_pruning`` share its entries."""
    return over_seeds("ch5-slimming", {"data": data.key(), "config": config, "lambda": strength,
                                       "prune": PRUNE_FRACTION, "floor": MIN_CHANNELS},
                      lambda seed: slimming_runs(data, config, strength, PRUNE_FRACTION, MIN_CHANNELS, seed, progress),
                      profile.seeds(), progress=progress, code=__name__)


def channels(model: nn.Module) -> dict[str, int]:
    """Output channels (units) of each convolution and hidden linear layer: the architecture, as numbers."""
    layers = prunable_layers(model)
    return {name.removeprefix("net."): layer.weight.shape[0] for name, layer in list(layers.items())[:-1]}


def uniform_vgg(target_macs: int, stages: Sequence[int] = (8, 16, 32)) -> nn.Module:
    """A uniformly thinned SmallVGG-BN (every stage's width times one factor) with MACs closest to ``target_macs``.

    Widths are whole numbers, so the MACs match only approximately (within a few percent for SmallVGG).
    """
    best: nn.Module | None = None
    with torch.random.fork_rng(devices=[]):  # the candidates' weights are thrown away: leave the caller's RNG alone
        for factor in torch.linspace(0.1, 1.0, 91).tolist():
            candidate = SmallVGG(stages=[max(1, round(factor * w)) for w in stages])
            if best is None or abs(total_macs(candidate) - target_macs) < abs(total_macs(best) - target_macs):
                best = candidate
    assert best is not None
    return best


def slimming_runs(data: DataSplits, config: TrainConfig, strength: float, prune_fraction: float,
                  min_channels: int, seed: int, progress: bool = True) -> list[dict[str, object]]:
    """Network slimming's architecture fine-tuned, Scratch-E and Scratch-B, and a uniformly thinned network
    of the same MACs trained as Scratch-B (pruning as architecture search). One seed.

    And the penalty's control: the dense network trained *without* the L1 penalty (λ = 0), cut by the same
    rule (the same global |γ| threshold for the same share of channels, the same floor) and fine-tuned alike
    (``no penalty, slimmed, fine-tuned``). What slimming's fine-tuned row gains over it is what the penalty bought.
    """
    dense = dense_baseline("vgg", data, config, seed, progress)
    small = slim(slimming_trained(data, config, strength, seed, progress), prune_fraction, min_channels)
    shape = {"channels": "-".join(str(c) for c in channels(small).values())}
    rows = [{**shape, **row} for row in retrain_three_ways(small, dense, data, config, seed, progress=progress)]
    unpenalized = slim(dense, prune_fraction, min_channels)  # a copy: the cached dense network is not touched
    tuning = replace(finetune_config(config), seed=seed)
    finetune(unpenalized, data, tuning, progress=progress, desc="no penalty, slimmed, fine-tuned")
    rows.append({"channels": "-".join(str(c) for c in channels(unpenalized).values()),
                 **result_row("no penalty, slimmed, fine-tuned", unpenalized, data, epochs_of(tuning, len(data.train)))})
    uniform = reinitialized(uniform_vgg(total_macs(small)), seed=derive_seed(seed, "fresh init"))
    budget = replace(scratch_b_config(config, len(data.train), dense, uniform), seed=seed)
    train(uniform, data, budget, progress=progress, desc="uniform Scratch-B")
    rows.append({"channels": "-".join(str(c) for c in channels(uniform).values()),
                 **result_row("uniform Scratch-B", uniform, data, epochs_of(budget, len(data.train)))})
    return rows


def unstructured_runs(data: DataSplits, config: TrainConfig, sparsities: Sequence[float], seed: int,
                      cap: float = 2.0, progress: bool = True) -> list[dict[str, object]]:
    """Global magnitude pruning of LeNet-300-100, then fine-tuned, Scratch-E and Scratch-B (capped); a gradual
    (AGP) fine-tuning arm on the fine-tuning budget; and chapter 3's dense-scale re-initialisation. One seed."""
    dense = dense_baseline("lenet300", data, config, seed, progress)
    rows = [{"sparsity": 0.0, **result_row("dense", dense, data, float(config.epochs))}]
    for sparsity in sparsities:
        pruned = one_shot(dense, sparsity, magnitude("global")).model
        rows += [{"sparsity": sparsity, **row}
                 for row in retrain_three_ways(pruned, dense, data, config, seed, cap=cap, progress=progress)]
        # A gentler fine-tuning arm: the same budget, the sparsity raised gradually (AGP) instead of in one cut. It
        # reaches the target at half the run, before the step schedule's first decay, so that the pruning happens at
        # the fine-tuning rate's peak and the second half recovers (ending at 75 %, the last cut met a rate of 1e-4).
        ft = replace(finetune_config(config), seed=seed)
        gradual = gradual_pruning(dense, data, sparsity, magnitude("global"), ft, end_fraction=STEP_MILESTONES[0],
                                  progress=progress).model
        rows.append({"sparsity": sparsity, **result_row("fine-tuned, gradual", gradual, data,
                                                         epochs_of(ft, len(data.train)))})
        # Chapter 3's control: the same mask, drawn at the *dense* network's initial scale.
        plain = reinitialized(pruned, seed=derive_seed(seed, "fresh init"), scale_to_fan_in=False)
        finetune(plain, data, replace(config, seed=seed), progress=progress, desc="Scratch-E, dense-scale init")
        rows.append({"sparsity": sparsity, **result_row("Scratch-E, dense-scale init", plain, data,
                                                         float(config.epochs))})
    return rows


def shuffle_within_units(model: nn.Module, seed: int) -> None:
    """Permute every unit's kept weights among its own kept positions, in place (a masked model).

    The weights a unit keeps, and so their sizes, stay exactly the same; only which input each value meets is
    drawn anew. Magnitude pruning keeps the weights largest after training, whose initial values are larger than a
    fresh draw's on average, so a ticket is not at the dense scale of a fresh draw: a shuffled ticket is the control that has the ticket's very scale and none of its
    placement.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, "shuffled mask"))  # the course's seed for shuffle controls
    for name, mask in get_masks(model).items():
        if mask.dim() < 2:
            continue
        layer = model.get_submodule(name.rpartition(".")[0])
        original = layer.parametrizations.weight.original
        with torch.no_grad():
            for row in range(mask.shape[0]):
                kept = mask[row].flatten().nonzero().squeeze(1)
                values = original[row].flatten()[kept]
                original[row].view(-1)[kept] = values[torch.randperm(len(kept), generator=generator).to(values.device)]


def _ticket(data: DataSplits, run: TrainConfig, sparsity: float, seed: int,
            progress: bool = True) -> tuple[nn.Module, nn.Module]:
    """(The dense LeNet-300-100 trained with ``run``, cached; the ticket: its theta_0 with the mask of one-shot global
    magnitude pruning of that dense network to ``sparsity``.)"""
    dense = dense_baseline("lenet300", data, run, seed, progress)
    ticket = build_model("lenet300", seed=seed)  # theta_0 of the dense run
    apply_masks(ticket, get_masks(one_shot(dense, sparsity, magnitude("global")).model))
    return dense, ticket


def kept_scale(data: DataSplits, config: TrainConfig, lr: float, sparsity: float, seed: int) -> dict[str, float]:
    """Per layer: the RMS of the ticket's kept initial weights over the RMS of all of them, which is the scale of a
    fresh draw at the dense scale (Liu et al.'s control). Above 1 means the ticket starts larger than that control:
    magnitude pruning keeps the weights largest after training, which started larger on average. One seed; the dense network is the cached one
    of :func:`ticket_vs_reinit_runs` at ``lr``."""
    _, ticket = _ticket(data, replace(config, lr=lr, seed=seed), sparsity, seed, progress=False)
    start = build_model("lenet300", seed=seed)  # the full draw: the ticket's pruned entries are stored as zeros
    ratios = {}
    for name, mask in get_masks(ticket).items():
        if mask.dim() >= 2:
            weight = start.get_parameter(name).detach()
            ratios[name.removeprefix("net.").removesuffix(".weight")] = float(
                weight[mask.bool()].pow(2).mean().sqrt() / weight.pow(2).mean().sqrt())
    return ratios


def ticket_vs_reinit_runs(data: DataSplits, config: TrainConfig, learning_rates: Sequence[float], sparsity: float,
                          seed: int, progress: bool = True) -> list[dict[str, object]]:
    """Liu et al.'s learning-rate test of the lottery ticket: at each learning rate, train LeNet-300-100,
    prune it once by global magnitude, and train the mask from the original initialisation (the ticket)
    and from a new random one, drawn at the dense scale (chapter 3's control) and scaled to the kept
    fan-in (which separates "the ticket's values" from "a badly scaled start"). The ticket also runs scaled to the
    kept fan-in (its theta_0 times each unit's ``sqrt(fan_in / kept_fan_in)``, as the scaled control is), and
    shuffled within each unit (:func:`shuffle_within_units`: the ticket's own values, so its own scale, each meeting
    another input): the one control whose scale is the ticket's. One seed."""
    rows = []
    for lr in learning_rates:
        run = replace(config, lr=lr, seed=seed)
        dense, ticket = _ticket(data, run, sparsity, seed, progress)
        rows.append({"lr": lr, **result_row("dense", dense, data, float(run.epochs))})  # the reference at this rate
        scaled_ticket = copy.deepcopy(ticket)
        scale_to_kept_fan_in(scaled_ticket)
        shuffled_ticket = copy.deepcopy(ticket)
        shuffle_within_units(shuffled_ticket, seed)
        controls = {"random re-init": reinitialized(ticket, seed=derive_seed(seed, "fresh init"), scale_to_fan_in=False),
                    "random re-init, fan-in-scaled": reinitialized(ticket, seed=derive_seed(seed, "fresh init"))}
        for method, model in (("ticket", ticket), ("ticket, fan-in-scaled", scaled_ticket),
                              ("ticket, shuffled within units", shuffled_ticket), *controls.items()):
            finetune(model, data, run, progress=progress, desc=f"{method}, lr={lr:g}")
            rows.append({"lr": lr, **result_row(method, model, data, float(run.epochs))})
    return rows


if __name__ == "__main__":
    main()
