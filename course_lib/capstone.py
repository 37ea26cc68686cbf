"""Chapter 8: every method of the course under one protocol, run from one registry.

Blalock et al. (2020) found that pruning papers rarely compare on the same
model, data, budget and seeds. The capstone does: every method of chapters
1-7 is a named *runner* in :data:`METHODS`, and every runner gets the same
:class:`Protocol` (model, data, training budget in epochs) and returns the
same record (:class:`Result`): accuracies, the sparsity its masks really
have, its training compute and its wall time.

**The budget.** One run trains for ``protocol.epochs`` epochs wherever the
method allows: pruning after training spends ``round(epochs / 3)`` of them
(at least one) fine-tuning and the rest dense
(:func:`course_lib.dpp.comparison.budgets`); training sparse
from the start spends all of it sparse. Methods that need more - a lottery
ticket trains twice, Scratch-B stretches its budget to the dense run's
compute - get it, and the record says so: ``train_epochs`` counts every
pass over the data, dense pre-training included, and ``train_flops`` the
ideal training FLOPs (zero weights skipped, Evci et al.'s accounting of
chapter 6) relative to one dense run of the budget.

**Selection.** Runners see the validation split and never look at the test
split; the record carries both accuracies, and the chapter reports test.

**Running it.** :func:`run` goes through the course's run cache, so a
chapter that finds its results cached never trains. Fill the cache on a
faster machine with::

    python -m course_lib.capstone --profile full --device cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.cache import cached_run
from course_lib.costs import layer_costs
from course_lib.data import DataSplits
from course_lib.devices import DEVICE_ENV_VAR, default_device
from course_lib.dpp.comparison import LENET_DENSE, VGG_DENSE, budgets, dpp_hook, dpp_splits
from course_lib.dpp.pruner import freeze
from course_lib.masks import apply_masks, get_masks, mask_sparsity, weight_masks
from course_lib.models import build_model
from course_lib.profiles import Profile, get_profile
from course_lib.pruning.at_init import init_masks
from course_lib.pruning.procedures import finetune, gradual_pruning, magnitude, units
from course_lib.pruning.rethinking import reinitialized, scratch_b_config, slim
from course_lib.pruning.slimming import BatchNormL1
from course_lib.pruning.surgery import shrink
from course_lib.pruning.selection import unstructured_masks
from course_lib.sparse.comparison import update_every
from course_lib.sparse.flops import training_step_flops
from course_lib.sparse.schedules import iterative_sparsities
from course_lib.sparse.tracking import MaskTracker
from course_lib.sparse.updaters import SET, RigL, Static
from course_lib.training import TrainConfig, evaluate, recalibrate_batchnorm, train

Family = Literal["unstructured", "structured"]


@dataclass(frozen=True)
class Protocol:
    """What every run of one family shares: the model, the data and the training budget."""

    model_name: str
    data: DataSplits
    epochs: int

    def key(self) -> dict[str, Any]:
        """Everything about the protocol that determines a result (for the run cache)."""
        return {"model": self.model_name, "sizes": self.data.sizes(), "split_seed": self.data.seed,
                "epochs": self.epochs}


@dataclass
class Result:
    """One run of one method at one sparsity and seed: the record every runner returns."""

    method: str
    family: str
    sparsity: float
    seed: int
    val_acc: float
    test_acc: float
    measured_sparsity: float
    weights_kept: int
    train_epochs: float
    train_flops: float
    seconds: float
    macs: int = 0  # multiply-accumulates per image, zero weights skipped
    parameters: int = 0  # stored weights and biases that are not zero
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    model: nn.Module | None = None  # structured runs: the physically smaller network (for timing)


class Ledger:
    """Counts a run's training: passes over the data and ideal training FLOPs, phase by phase.

    Every training call of a runner takes ``ledger.hooks()``: a
    :class:`~course_lib.sparse.tracking.MaskTracker` that counts each step
    with the masks in use at that step (so gradual and dynamic masks are
    counted as they were). A phase that was run once and cached - the dense
    pre-training several methods share - is charged with :meth:`charge_dense`.
    """

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        model = build_model(protocol.model_name)
        self.macs = layer_costs(model).set_index("layer").macs.astype(float).to_dict()
        self.trackers: list[MaskTracker] = []
        self.charged_flops, self.charged_epochs = 0.0, 0.0

    def hooks(self) -> list[MaskTracker]:
        tracker = MaskTracker(snapshot_every=10**9)  # only the start and the end: we want the counts
        self.trackers.append(tracker)
        return [tracker]

    def charge_dense(self, epochs: float) -> None:
        """Count ``epochs`` of dense training that ran elsewhere (e.g. a cached pre-training)."""
        self.charged_epochs += epochs
        self.charged_flops += epochs * len(self.protocol.data.train) * training_step_flops(self.macs)

    def dense_budget_flops(self) -> float:
        """FLOPs of one dense training run of the protocol's budget: the unit of ``train_flops``."""
        return self.protocol.epochs * len(self.protocol.data.train) * training_step_flops(self.macs)

    def totals(self) -> tuple[float, float]:
        """(epochs, training FLOPs relative to one dense run of the budget)."""
        images = sum(t.trace.images for t in self.trackers if t.trace is not None)
        flops = sum(t.trace.training_flops for t in self.trackers if t.trace is not None)
        epochs = self.charged_epochs + images / len(self.protocol.data.train)
        return epochs, (self.charged_flops + flops) / self.dense_budget_flops()


Runner = Callable[[Protocol, float, int, Ledger], nn.Module]


@dataclass(frozen=True)
class Method:
    """A registered method: its runner returns the pruned, trained network (masked or shrunk)."""

    name: str
    family: Family
    chapter: int
    about: str
    runner: Runner


METHODS: dict[str, Method] = {}


def register(name: str, family: Family, chapter: int, about: str) -> Callable[[Runner], Runner]:
    """Add a runner to :data:`METHODS` under ``name``."""
    def add(runner: Runner) -> Runner:
        if name in METHODS:
            raise ValueError(f"A method called {name!r} is registered already.")
        METHODS[name] = Method(name, family, chapter, about, runner)
        return runner
    return add


def dense_trained(protocol: Protocol, epochs: int, seed: int, ledger: Ledger) -> nn.Module:
    """The dense network of ``seed`` after ``epochs`` (cached, shared by methods; charged to ``ledger``)."""
    config = TrainConfig(epochs=epochs, seed=seed)

    def compute() -> dict[str, torch.Tensor]:
        model = build_model(protocol.model_name, seed=seed)
        train(model, protocol.data, config, progress=False)
        return {k: v.cpu() for k, v in model.state_dict().items()}

    model = build_model(protocol.model_name, seed=seed)
    model.load_state_dict(cached_run("capstone-dense", {**protocol.key(), "dense_epochs": epochs, "seed": seed},
                                     compute))
    ledger.charge_dense(epochs)
    return model


# ------------------------------------------------------------------------ unstructured, LeNet-300-100

def _pruned_once(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> tuple[nn.Module, dict[str, TrainConfig]]:
    """The dense network after two thirds of the budget, pruned once by global magnitude; and the budget's plan."""
    plan = budgets(protocol.epochs, seed)
    model = dense_trained(protocol, plan["dense"].epochs, seed, ledger)
    apply_masks(model, magnitude("global", exclude=LENET_DENSE)(model, sparsity))
    return model, plan


@register("magnitude + fine-tune", "unstructured", 1, "dense, one-shot global magnitude, retrain on a fresh cosine from the peak rate")
def _magnitude_finetune(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    model, plan = _pruned_once(protocol, sparsity, seed, ledger)
    finetune(model, protocol.data, plan["finetune"], extra_hooks=ledger.hooks(), progress=False)
    return model


@register("iterative magnitude", "unstructured", 1, "dense, then one prune + fine-tune round per fine-tuning epoch")
def _iterative(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    plan = budgets(protocol.epochs, seed)
    model = dense_trained(protocol, plan["dense"].epochs, seed, ledger)
    rounds = plan["finetune"].epochs
    for target in iterative_sparsities(sparsity, rounds):
        apply_masks(model, magnitude("global", exclude=LENET_DENSE)(model, target))
        finetune(model, protocol.data, replace(plan["finetune"], epochs=1), extra_hooks=ledger.hooks(), progress=False)
    return model


@register("AGP", "unstructured", 1, "from scratch, sparsity raised along the cubic curve (Zhu & Gupta 2017)")
def _agp(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    config = budgets(protocol.epochs, seed)["dpp"]
    return gradual_pruning(build_model(protocol.model_name, seed=seed), protocol.data, sparsity,
                           magnitude("global", exclude=LENET_DENSE), config, begin_fraction=0.25,
                           extra_hooks=ledger.hooks(), progress=False).model


@register("lottery ticket", "unstructured", 3, "train, prune once, rewind survivors to their initial values, train again")
def _lottery(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    trained = dense_trained(protocol, protocol.epochs, seed, ledger)
    masks = unstructured_masks(trained, sparsity, scope="local", exclude=LENET_DENSE)  # Frankle & Carbin: per layer
    ticket = build_model(protocol.model_name, seed=seed)  # theta_0: the same seed gives the same initial weights
    apply_masks(ticket, masks)
    finetune(ticket, protocol.data, TrainConfig(epochs=protocol.epochs, seed=seed), extra_hooks=ledger.hooks(),
             progress=False)
    return ticket


@register("LR rewinding", "unstructured", 3, "dense, prune once, retrain on the dense schedule's last epochs (Renda et al. 2020)")
def _lr_rewinding(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    model, plan = _pruned_once(protocol, sparsity, seed, ledger)
    rewind = plan["dense"].epochs - plan["finetune"].epochs  # replay epochs rewind .. end of the dense schedule
    finetune(model, protocol.data, plan["dense"], extra_hooks=ledger.hooks(), progress=False, start_epoch=rewind)
    return model


def _at_init(method: str) -> Runner:
    def run(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
        model = build_model(protocol.model_name, seed=seed)
        masks = init_masks(model, method, sparsity, data=protocol.data.train, seed=seed, exclude=LENET_DENSE)
        apply_masks(model, masks)
        finetune(model, protocol.data, TrainConfig(epochs=protocol.epochs, seed=seed), extra_hooks=ledger.hooks(),
                 progress=False)
        return model
    return run


register("SNIP", "unstructured", 4, "masks at initialization from |w * dL/dw| (Lee et al. 2019), then trained")(
    _at_init("snip"))
register("SynFlow", "unstructured", 4, "masks at initialization from iterative synaptic flow (Tanaka et al. 2020)")(
    _at_init("synflow"))


def _sparse_trainer(trainer: type) -> Runner:
    def run(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
        config = TrainConfig(epochs=protocol.epochs, seed=seed)
        model = build_model(protocol.model_name, seed=seed)
        updater = trainer(sparsity, "erk", update_every=update_every(config, len(protocol.data.train)),
                          exclude=LENET_DENSE, seed=seed)
        train(model, protocol.data, config, hooks=[updater, *ledger.hooks()], progress=False)
        return model
    return run


register("static", "unstructured", 6, "a random ERK mask, fixed, trained from scratch")(_sparse_trainer(Static))
register("SET", "unstructured", 6, "ERK; drop the smallest |w|, regrow at random (Mocanu et al. 2018)")(
    _sparse_trainer(SET))
register("RigL", "unstructured", 6, "ERK; drop the smallest |w|, regrow the largest dense gradient (Evci et al. 2020)")(
    _sparse_trainer(RigL))


@register("DPP", "unstructured", 7, "learned k-of-n masks, exactly k inputs per neuron (Gonzalez-Carabarin et al. 2022)")
def _dpp(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    config = budgets(protocol.epochs, seed)["dpp"]
    model = build_model(protocol.model_name, seed=seed)
    train(model, protocol.data, config, hooks=[dpp_hook(sparsity, protocol.data, config, seed), *ledger.hooks()],
          progress=False)
    freeze(model)
    recalibrate_batchnorm(model, protocol.data.train)
    return model


# ------------------------------------------------------------------------ structured, SmallVGG-BN

KEEP = 0.5  # the structured family keeps half of every convolution's filters
SLIMMING_STRENGTHS = (1e-2, 3e-2, 1e-1)  # network slimming's L1 strength, chosen on validation per protocol
SLIMMING_FLOOR = 2  # channels every layer keeps under slimming's global threshold (chapter 5)


def _filters(protocol: Protocol, seed: int, ledger: Ledger) -> tuple[nn.Module, nn.Module]:
    """(dense after two thirds of the budget, its L1-filter-pruned and shrunk copy)."""
    plan = budgets(protocol.epochs, seed)
    dense = dense_trained(protocol, plan["dense"].epochs, seed, ledger)
    pruned = copy.deepcopy(dense)
    apply_masks(pruned, units("l1", exclude=VGG_DENSE)(pruned, 1.0 - KEEP))
    return dense, shrink(pruned)


@register("dense", "structured", 0, "SmallVGG-BN trained for the whole budget: the reference")
def _dense_vgg(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    model = build_model(protocol.model_name, seed=seed)
    train(model, protocol.data, TrainConfig(epochs=protocol.epochs, seed=seed), hooks=ledger.hooks(), progress=False)
    return model


@register("L1 filters + fine-tune", "structured", 2, "dense, remove the filters of smallest L1 norm, fine-tune (Li et al. 2017)")
def _l1_filters(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    _, small = _filters(protocol, seed, ledger)
    finetune(small, protocol.data, budgets(protocol.epochs, seed)["finetune"], extra_hooks=ledger.hooks(), progress=False)
    return small


@register("Scratch-B", "structured", 5, "L1-filter architecture, new weights, trained for the dense run's compute (Liu et al. 2019)")
def _scratch_b(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    dense, small = _filters(protocol, seed, ledger)  # finding the architecture costs the dense phase too
    scratch = reinitialized(small, seed=seed + 1000)
    config = scratch_b_config(TrainConfig(epochs=protocol.epochs, seed=seed), len(protocol.data.train), dense, small)
    train(scratch, protocol.data, config, hooks=ledger.hooks(), progress=False)
    return scratch


def slimming_strength(protocol: Protocol) -> float:
    """Network slimming's L1 strength for this protocol: the best validation accuracy after slimming (seed 0, cached)."""
    config = budgets(protocol.epochs)["dense"]

    def compute() -> float:
        scores = {}
        for strength in SLIMMING_STRENGTHS:
            model = build_model(protocol.model_name, seed=0)
            train(model, protocol.data, _slimming_recipe(config), hooks=[BatchNormL1(strength)], progress=False)
            scores[strength] = evaluate(slim(model, 1.0 - KEEP, SLIMMING_FLOOR), protocol.data.val)
        return max(scores, key=scores.get)

    return cached_run("capstone-slimming-strength", {**protocol.key(), "strengths": SLIMMING_STRENGTHS}, compute)


def _slimming_recipe(config: TrainConfig) -> TrainConfig:
    """Sparsity training with SGD, as the paper (and chapter 5): Adam would undo the L1 term's weighting."""
    return replace(config, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step")


@register("network slimming", "structured", 5, "L1 on BatchNorm scales while training, one global threshold, fine-tune")
def _slimming(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    plan = budgets(protocol.epochs, seed)
    model = build_model(protocol.model_name, seed=seed)
    train(model, protocol.data, _slimming_recipe(plan["dense"]), hooks=[BatchNormL1(slimming_strength(protocol)),
                                                                        *ledger.hooks()], progress=False)
    small = slim(model, 1.0 - KEEP, SLIMMING_FLOOR)
    finetune(small, protocol.data, plan["finetune"], extra_hooks=ledger.hooks(), progress=False)
    return small


@register("feature-map DPP", "structured", 7, "learned k of n filters per layer, then removed physically")
def _feature_map_dpp(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    config = budgets(protocol.epochs, seed)["dpp"]
    model = build_model(protocol.model_name, seed=seed)
    hook = dpp_hook(1.0 - KEEP, protocol.data, config, seed, granularity="feature_map", exclude=VGG_DENSE)
    train(model, protocol.data, config, hooks=[hook, *ledger.hooks()], progress=False)
    freeze(model)
    recalibrate_batchnorm(model, protocol.data.train)
    return shrink(model)


# ------------------------------------------------------------------------ running and caching

def run_method(name: str, protocol: Protocol, sparsity: float, seed: int) -> Result:
    """Run one registered method once (no cache): the common record."""
    if name not in METHODS:
        raise ValueError(f"No method called {name!r}; the registry has {sorted(METHODS)}.")
    method = METHODS[name]
    started = time.perf_counter()
    ledger = Ledger(protocol)
    model = method.runner(protocol, sparsity, seed, ledger)
    masks = weight_masks(get_masks(model))
    epochs, flops = ledger.totals()
    costs = layer_costs(model)
    kept = sum(int(masks[f"{n}.weight"].sum()) if f"{n}.weight" in masks else int(w)  # the mask's count: a kept
               for n, w in zip(costs.layer, costs.weights))                           # weight may be exactly 0
    dense_weights = int(layer_costs(build_model(protocol.model_name)).weights.sum())
    structured = method.family == "structured"
    return Result(method=name, family=method.family, sparsity=sparsity, seed=seed,
                  val_acc=evaluate(model, protocol.data.val), test_acc=evaluate(model, protocol.data.test),
                  measured_sparsity=1.0 - kept / dense_weights if structured else mask_sparsity(masks),
                  weights_kept=kept, train_epochs=epochs, train_flops=flops, seconds=time.perf_counter() - started,
                  macs=int(costs.effective_macs.sum()), parameters=kept + int(costs.biases.sum()),
                  masks={n: m.bool().cpu() for n, m in masks.items()},
                  model=copy.deepcopy(model).cpu().eval() if structured else None)


def run(name: str, protocol: Protocol, sparsity: float, seed: int) -> dict[str, Any]:
    """:func:`run_method` through the run cache: a row (a plain dict) of the capstone's tables."""
    return cached_run("capstone", {**protocol.key(), "method": name, "sparsity": sparsity, "seed": seed},
                      lambda: asdict(run_method(name, protocol, sparsity, seed)))


def protocols(profile: Profile) -> dict[str, Protocol]:
    """Both families' protocols for a profile: chapter 7's data, LeNet-300-100 and SmallVGG-BN budgets."""
    data = dpp_splits(profile)  # chapter 7's data: the same images for both chapters
    return {"unstructured": Protocol("lenet300", data, profile.capstone_epochs),
            "structured": Protocol("vgg", data, profile.capstone_vgg_epochs)}


def family_jobs(family: Family, profile: Profile, methods: Sequence[str] | None = None) -> list[tuple[str, float, int]]:
    """The runs of one family: unstructured methods at the profile's sparsities, structured ones at 1 - KEEP."""
    names = [n for n, m in METHODS.items() if m.family == family and (methods is None or n in methods)]
    sparsities = profile.capstone_sparsities if family == "unstructured" else (1.0 - KEEP,)
    return plan(names, sparsities, profile.seeds())


def plan(methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int]) -> list[tuple[str, float, int]]:
    """Every (method, sparsity, seed) to run, seeds outermost so that partial runs cover every method."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; the registry has {sorted(METHODS)}.")
    return [(m, s, seed) for seed in seeds for m in methods for s in sparsities]


def dense_reference(profile: Profile) -> pd.DataFrame:
    """LeNet-300-100 trained densely for the whole budget, one row per seed (the ceiling of the plot; cached)."""
    protocol = protocols(profile)["unstructured"]
    rows = []
    for seed in profile.seeds():
        model = dense_trained(protocol, protocol.epochs, seed, Ledger(protocol))
        rows.append({"seed": seed, "val_acc": evaluate(model, protocol.data.val),
                     "test_acc": evaluate(model, protocol.data.test)})
    return pd.DataFrame(rows)


def ranking(summary: pd.DataFrame) -> pd.DataFrame:
    """Methods by mean accuracy, best first, and whether each is separated from the next by more than the spread.

    ``summary`` is :func:`course_lib.experiments.mean_std` of one setting, indexed by method. "Separated" means
    the gap to the next method down exceeds the larger of the two standard deviations over seeds.
    """
    ordered = summary.sort_values("mean", ascending=False)
    gaps = ordered["mean"] - ordered["mean"].shift(-1)
    spreads = pd.concat([ordered["std"], ordered["std"].shift(-1)], axis=1).max(axis=1)
    separated = (gaps > spreads).astype("boolean").mask(gaps.isna())  # the last method has no next: <NA>
    return ordered.assign(rank=range(1, len(ordered) + 1), gap_to_next=gaps, separated_from_next=separated)


def results(profile: Profile, family: Family, methods: Sequence[str] | None = None,
            progress: bool = True) -> pd.DataFrame:
    """Every run of one family under the profile's protocol, through the cache: one row per run."""
    protocol = protocols(profile)[family]
    jobs = family_jobs(family, profile, methods)
    rows = [run(name, protocol, sparsity, seed)
            for name, sparsity, seed in tqdm(jobs, desc=f"capstone: {family} runs", disable=not progress)]
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the run cache with every capstone run of a profile (``python -m course_lib.capstone --help``)."""
    parser = argparse.ArgumentParser(description="Run every method of the course under the capstone's protocol "
                                                 "and cache the results.")
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--methods", nargs="*", default=None, help=f"a subset of: {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    if args.device:
        os.environ[DEVICE_ENV_VAR] = args.device  # default_device() checks that the machine has it
    if args.methods:
        plan(args.methods, (0.5,), (0,))  # fails early on a name the registry does not know
    started = time.perf_counter()
    count = sum(len(results(profile, family, args.methods)) for family in ("unstructured", "structured"))
    print(f"{count} runs of profile {profile.name} cached in {time.perf_counter() - started:.0f} s "
          f"on {default_device()}")


if __name__ == "__main__":
    main()
