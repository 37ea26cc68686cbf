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

import copy
import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from course_lib.cache import cached_run, trained_baseline
from course_lib.costs import layer_costs, prunable_layers
from course_lib.data import DataSplits, load_splits
from course_lib.devices import model_device
from course_lib.masks import apply_masks, get_masks, scale_to_kept_fan_in, unmasked_copy
from course_lib.models import SmallVGG, build_model
from course_lib.profiles import Profile, shifted_seed
from course_lib.pruning.procedures import finetune, magnitude, one_shot, units
from course_lib.pruning.slimming import BatchNormL1, batchnorm_scales, global_threshold, slimming_masks
from course_lib.pruning.surgery import shrink
from course_lib.training import TrainConfig, evaluate, steps_per_epoch, train
from course_lib.training.config import STEP_DECAY


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


# ---------------------------------------------------------------------------
# The chapter's experiments: each returns plain rows, for over_seeds and its cache.
# ---------------------------------------------------------------------------

SCRATCH_SEED_OFFSET = 1000  # scratch networks draw from seeds the dense runs never use


def rethinking_recipe(profile: Profile, **overrides: object) -> TrainConfig:
    """Liu et al.'s CIFAR recipe, scaled to the profile: SGD at 0.1, momentum 0.9, weight decay 1e-4,
    the learning rate x0.1 at 50 % and 75 % of training."""
    settings = {"epochs": profile.rethinking_epochs, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                "weight_decay": 1e-4, "schedule": "step", **overrides}
    return TrainConfig(**settings)  # type: ignore[arg-type]


def rethinking_splits(profile: Profile) -> DataSplits:
    """The profile's data with ``rethinking_train_size`` training images (same validation and test sets)."""
    return load_splits(profile, train_size=profile.rethinking_train_size)


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
            "epochs": epochs, "MACs": int(costs.effective_macs.sum()), "weights": int(costs.nonzero.sum())}


def retrain_three_ways(pruned: nn.Module, dense: nn.Module, data: DataSplits, config: TrainConfig, seed: int,
                       cap: float | None = None, progress: bool = True) -> list[dict[str, object]]:
    """Fine-tuned, Scratch-E and Scratch-B of one pruned network (shrunk, or masked), one row each.

    ``config`` is the dense run's; ``epochs`` in the rows counts each method's own
    training (fine-tuning also needed the dense run before it).
    """
    tuned = copy.deepcopy(pruned)
    ft = replace(finetune_config(config), seed=seed)
    finetune(tuned, data, ft, progress=progress, desc="fine-tuned")
    rows = [result_row("fine-tuned", tuned, data, epochs_of(ft, len(data.train)))]
    budgets = {"Scratch-E": config, "Scratch-B": scratch_b_config(config, len(data.train), dense, pruned, cap)}
    for method, budget in budgets.items():
        scratch = reinitialized(pruned, seed=seed + SCRATCH_SEED_OFFSET)
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
    then fine-tuned, Scratch-E and Scratch-B. One seed."""
    dense = dense_baseline("vgg", data, config, seed, progress)
    rows = [{"keep": 1.0, **result_row("dense", dense, data, float(config.epochs))}]
    for keep in keep_ratios:
        pruned = shrink(one_shot(dense, 1.0 - keep, units("l1", "local")).model)
        rows += [{"keep": keep, **row} for row in retrain_three_ways(pruned, dense, data, config, seed,
                                                                       progress=progress)]
    return rows


def slimming_trained(data: DataSplits, config: TrainConfig, strength: float, seed: int,
                     progress: bool = True) -> nn.Module:
    """SmallVGG-BN trained with network slimming's L1 penalty on the BatchNorm scales (cached)."""
    def run() -> dict[str, torch.Tensor]:
        model = build_model("vgg", seed=seed)
        train(model, data, replace(config, seed=seed), hooks=[BatchNormL1(strength)], progress=progress,
              desc=f"sparsity training, lambda={strength:g}")
        return {k: v.cpu() for k, v in model.state_dict().items()}

    model = build_model("vgg", seed=seed)
    model.load_state_dict(cached_run("ch5-slimming-trained", {"data": data.sizes(), "split_seed": data.seed,
                                                               "config": config, "strength": strength,
                                                               "seed": seed}, run))
    return model.eval()


def slim(model: nn.Module, prune_fraction: float, min_channels: int) -> nn.Module:
    """The physically smaller network network slimming finds: one global |gamma| threshold, a per-layer floor."""
    threshold = global_threshold(batchnorm_scales(model), prune_fraction)
    masked = copy.deepcopy(model)
    apply_masks(masked, slimming_masks(masked, threshold, min_channels))
    return shrink(masked)


def choose_strength(data: DataSplits, config: TrainConfig, strengths: Sequence[float], prune_fraction: float,
                    min_channels: int, seed: int = 0, progress: bool = True) -> list[dict[str, object]]:
    """For each L1 strength: validation accuracy after sparsity training, and after slimming (no fine-tuning).

    The strength to use is the one whose slimmed network keeps the best
    validation accuracy: chosen on validation, never on the test set.
    """
    rows = []
    for strength in strengths:
        model = slimming_trained(data, config, strength, seed, progress)
        small = slim(model, prune_fraction, min_channels)
        scales = torch.cat(list(batchnorm_scales(model).values()))
        rows.append({"lambda": strength, "val_acc_trained": evaluate(model, data.val),
                     "val_acc_slimmed": evaluate(small, data.val), "share_below_0.05": float((scales < 0.05).float().mean()),
                     "MACs": total_macs(small)})
    return rows


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
    of the same MACs trained as Scratch-B (pruning as architecture search). One seed."""
    dense = dense_baseline("vgg", data, config, seed, progress)
    small = slim(slimming_trained(data, config, strength, seed, progress), prune_fraction, min_channels)
    shape = {"channels": "-".join(str(c) for c in channels(small).values())}
    rows = [{**shape, **row} for row in retrain_three_ways(small, dense, data, config, seed, progress=progress)]
    uniform = reinitialized(uniform_vgg(total_macs(small)), seed=seed + SCRATCH_SEED_OFFSET)
    budget = replace(scratch_b_config(config, len(data.train), dense, uniform), seed=seed)
    train(uniform, data, budget, progress=progress, desc="uniform, Scratch-B")
    rows.append({"channels": "-".join(str(c) for c in channels(uniform).values()),
                 **result_row("uniform Scratch-B", uniform, data, epochs_of(budget, len(data.train)))})
    return rows


def unstructured_runs(data: DataSplits, config: TrainConfig, sparsities: Sequence[float], seed: int,
                      cap: float = 2.0, progress: bool = True) -> list[dict[str, object]]:
    """Global magnitude pruning of LeNet-300-100, then fine-tuned, Scratch-E and Scratch-B (capped). One seed."""
    dense = dense_baseline("lenet300", data, config, seed, progress)
    rows = [{"sparsity": 0.0, **result_row("dense", dense, data, float(config.epochs))}]
    for sparsity in sparsities:
        pruned = one_shot(dense, sparsity, magnitude("global")).model
        rows += [{"sparsity": sparsity, **row}
                 for row in retrain_three_ways(pruned, dense, data, config, seed, cap=cap, progress=progress)]
        # Chapter 3's control: the same mask, drawn at the *dense* network's initial scale.
        plain = reinitialized(pruned, seed=seed + SCRATCH_SEED_OFFSET, scale_to_fan_in=False)
        finetune(plain, data, replace(config, seed=seed), progress=progress, desc="Scratch-E, dense-scale init")
        rows.append({"sparsity": sparsity, **result_row("Scratch-E, dense-scale init", plain, data,
                                                         float(config.epochs))})
    return rows


def ticket_vs_reinit_runs(data: DataSplits, config: TrainConfig, learning_rates: Sequence[float], sparsity: float,
                          seed: int, progress: bool = True) -> list[dict[str, object]]:
    """Liu et al.'s learning-rate test of the lottery ticket: at each learning rate, train LeNet-300-100,
    prune it once by global magnitude, and train the mask from the original initialisation (the ticket)
    and from a new random one, drawn at the dense scale (chapter 3's control) and scaled to the kept
    fan-in (which separates "the ticket's values" from "a badly scaled start"). One seed."""
    rows = []
    for lr in learning_rates:
        run = replace(config, lr=lr, seed=seed)
        dense = dense_baseline("lenet300", data, run, seed, progress)
        masks = get_masks(one_shot(dense, sparsity, magnitude("global")).model)
        ticket = build_model("lenet300", seed=seed)  # theta_0 of the dense run
        apply_masks(ticket, masks)
        controls = {"random re-init": reinitialized(ticket, seed=seed + SCRATCH_SEED_OFFSET, scale_to_fan_in=False),
                    "random re-init, fan-in-scaled": reinitialized(ticket, seed=seed + SCRATCH_SEED_OFFSET)}
        for method, model in (("ticket", ticket), *controls.items()):
            finetune(model, data, run, progress=progress, desc=f"{method}, lr={lr:g}")
            rows.append({"lr": lr, **result_row(method, model, data, float(run.epochs))})
    return rows
