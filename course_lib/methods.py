"""The method registry: every pruning method of the course as one named runner, on one protocol.

Blalock et al. (2020) found that pruning papers rarely compare on the same
model, data, budget and seeds. Here every method of chapters 1-7 registers
its *runner* once, in :data:`METHODS`; the capstone (chapter 8) runs them all
from this registry, and a new method joins the comparison by registering
one function. A runner gets the same :class:`Protocol` (model, data,
training budget in epochs), a sparsity, a seed and a :class:`Ledger` that
counts its training, and returns the pruned, trained network;
:func:`run_method` measures it into the common :class:`RunRecord`.

**The budget.** One run trains for ``protocol.epochs`` epochs wherever the
method allows: pruning after training spends ``round(epochs / 3)`` of them
(at least one) fine-tuning and the rest dense
(:func:`course_lib.pruning.procedures.budgets`); training sparse from the
start spends all of it sparse. Methods that need more - a lottery ticket
trains twice, Scratch-B stretches its budget to the dense run's compute -
get it, and the record says so: ``train_epochs`` counts every pass over the
data, dense pre-training included, and ``train_flops`` the ideal training
FLOPs (zero weights skipped, Evci et al.'s accounting of chapter 6), both
absolute and relative to one dense run of the budget.

**Selection.** Runners see the validation split and never look at the test
split; the record carries both accuracies.

Adding a method::

    @register("my method", "unstructured", chapter=9, about="one line on what it does")
    def _my_method(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
        model = build_model(protocol.model_name, seed=seed)
        ...                                   # prune and train, passing ledger.hooks() to every train()
        return model
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from course_lib.cache import cached_run, trained_baseline
from course_lib.costs import layer_costs
from course_lib.data import DataSplits
from course_lib.dpp.pruner import dpp_hook, train_dpp
from course_lib.masks import apply_masks, get_masks, mask_sparsity, weight_masks
from course_lib.models import LENET_CLASSIFIER, VGG_CLASSIFIER, build_model
from course_lib.profiles import derive_seed
from course_lib.pruning.at_init import init_masks
from course_lib.pruning.procedures import budgets, finetune, gradual_pruning, magnitude, units
from course_lib.pruning.rethinking import reinitialized, scratch_b_config
from course_lib.pruning.selection import unstructured_masks
from course_lib.pruning.slimming import BatchNormL1, slim
from course_lib.pruning.surgery import shrink
from course_lib.sparse.flops import training_step_flops
from course_lib.sparse.schedules import iterative_sparsities, update_every
from course_lib.sparse.tracking import MaskTracker
from course_lib.sparse.updaters import SET, RigL, Static
from course_lib.training import TrainConfig, evaluate, train

Family = Literal["unstructured", "structured"]


@dataclass(frozen=True)
class Protocol:
    """What every run of one family shares: the model, the data and the training budget."""

    model_name: str
    data: DataSplits
    epochs: int

    def key(self) -> dict[str, Any]:
        """Everything about the protocol that determines a result (for the run cache)."""
        return {"model": self.model_name, "data": self.data.key(), "epochs": self.epochs}


@dataclass
class RunRecord:
    """One run of one method at one sparsity and seed, measured the same way for every method.

    Attributes:
        method, family, sparsity, seed: what was run (``sparsity`` is the one asked for).
        settings: the method's own settings (e.g. the share of filters kept), as registered.
        val_acc, test_acc: accuracy in % on the validation and test splits.
        measured_sparsity: the share of the dense network's weights the result does not keep.
        weights_kept: weights kept (a mask's ones; all weights of a shrunk network).
        parameters: weights kept plus biases.
        macs: multiply-accumulates per image, zero weights skipped.
        bytes: what the kept weights and biases take in float32.
        train_epochs: passes over the training data, every phase included.
        train_flops: ideal training FLOPs relative to one dense run of the protocol's budget.
        train_flops_total: the same FLOPs, absolute.
        seconds: wall time of the run (without what was loaded from the cache).
        masks: the final masks, as booleans (unstructured runs).
        model: structured runs: the physically smaller network (for timing).
    """

    method: str
    family: str
    sparsity: float
    seed: int
    val_acc: float
    test_acc: float
    measured_sparsity: float
    weights_kept: int
    parameters: int
    macs: int
    bytes: int
    train_epochs: float
    train_flops: float
    train_flops_total: float
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    model: nn.Module | None = None


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
        dense = layer_costs(build_model(protocol.model_name))
        self.macs = dense.set_index("layer").macs.astype(float).to_dict()
        self.dense_weights = int(dense.weights.sum())  # the unit of a shrunk network's measured sparsity
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
        """(epochs, training FLOPs in all)."""
        images = sum(t.trace.images for t in self.trackers if t.trace is not None)
        flops = sum(t.trace.training_flops for t in self.trackers if t.trace is not None)
        return self.charged_epochs + images / len(self.protocol.data.train), self.charged_flops + flops


Runner = Callable[[Protocol, float, int, Ledger], nn.Module]


@dataclass(frozen=True)
class Method:
    """A registered method: its runner returns the pruned, trained network (masked or shrunk)."""

    name: str
    family: Family
    chapter: int
    about: str
    runner: Runner
    settings: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {}


def register(name: str, family: Family, chapter: int, about: str,
             settings: dict[str, Any] | None = None) -> Callable[[Runner], Runner]:
    """Add a runner to :data:`METHODS` under ``name`` (``settings``: the method's own constants, for the record)."""
    def add(runner: Runner) -> Runner:
        if name in METHODS:
            raise ValueError(f"A method called {name!r} is registered already.")
        METHODS[name] = Method(name, family, chapter, about, runner, dict(settings or {}))
        return runner
    return add


def dense_trained(protocol: Protocol, epochs: int, seed: int, ledger: Ledger) -> nn.Module:
    """The dense network of ``seed`` after ``epochs`` (the course's cached dense trainer; charged to ``ledger``)."""
    model = trained_baseline(protocol.model_name, protocol.data, TrainConfig(epochs=epochs, seed=seed),
                             progress=False).model
    ledger.charge_dense(epochs)
    return model


# ------------------------------------------------------------------------ unstructured, LeNet-300-100

def _pruned_once(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> tuple[nn.Module, dict[str, TrainConfig]]:
    """The dense network after two thirds of the budget, pruned once by global magnitude; and the budget's plan."""
    plan = budgets(protocol.epochs, seed)
    model = dense_trained(protocol, plan["dense"].epochs, seed, ledger)
    apply_masks(model, magnitude("global", exclude=LENET_CLASSIFIER)(model, sparsity))
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
        apply_masks(model, magnitude("global", exclude=LENET_CLASSIFIER)(model, target))
        finetune(model, protocol.data, replace(plan["finetune"], epochs=1), extra_hooks=ledger.hooks(), progress=False)
    return model


@register("AGP", "unstructured", 1, "from scratch, sparsity raised along the cubic curve (Zhu & Gupta 2017)")
def _agp(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    config = budgets(protocol.epochs, seed)["dpp"]
    return gradual_pruning(build_model(protocol.model_name, seed=seed), protocol.data, sparsity,
                           magnitude("global", exclude=LENET_CLASSIFIER), config, begin_fraction=0.25,
                           extra_hooks=ledger.hooks(), progress=False).model


@register("lottery ticket", "unstructured", 3, "train, prune once, rewind survivors to their initial values, train again")
def _lottery(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    trained = dense_trained(protocol, protocol.epochs, seed, ledger)
    masks = unstructured_masks(trained, sparsity, scope="local", exclude=LENET_CLASSIFIER)  # Frankle & Carbin: per layer
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
        masks = init_masks(model, method, sparsity, data=protocol.data.train, seed=seed, exclude=LENET_CLASSIFIER)
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
                          exclude=LENET_CLASSIFIER, seed=seed)
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
    hook = dpp_hook(sparsity, protocol.data, config, seed, LENET_CLASSIFIER)
    return train_dpp(build_model(protocol.model_name, seed=seed), protocol.data, config, hook, ledger.hooks())


# ------------------------------------------------------------------------ structured, SmallVGG-BN

KEEP = 0.5  # the structured family keeps half of every convolution's filters
SLIMMING_STRENGTHS = (1e-2, 3e-2, 1e-1)  # network slimming's L1 strength, chosen on validation per protocol
SLIMMING_FLOOR = 2  # channels every layer keeps under slimming's global threshold (chapter 5)


def _filters(protocol: Protocol, seed: int, ledger: Ledger) -> tuple[nn.Module, nn.Module]:
    """(dense after two thirds of the budget, its L1-filter-pruned and shrunk copy)."""
    plan = budgets(protocol.epochs, seed)
    dense = dense_trained(protocol, plan["dense"].epochs, seed, ledger)
    pruned = copy.deepcopy(dense)
    apply_masks(pruned, units("l1", exclude=VGG_CLASSIFIER)(pruned, 1.0 - KEEP))
    return dense, shrink(pruned)


@register("dense", "structured", 0, "SmallVGG-BN trained for the whole budget: the reference")
def _dense_vgg(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    model = build_model(protocol.model_name, seed=seed)
    train(model, protocol.data, TrainConfig(epochs=protocol.epochs, seed=seed), hooks=ledger.hooks(), progress=False)
    return model


@register("L1 filters + fine-tune", "structured", 2, "dense, remove the filters of smallest L1 norm, fine-tune (Li et al. 2017)",
          settings={"keep": KEEP})
def _l1_filters(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    _, small = _filters(protocol, seed, ledger)
    finetune(small, protocol.data, budgets(protocol.epochs, seed)["finetune"], extra_hooks=ledger.hooks(), progress=False)
    return small


@register("Scratch-B", "structured", 5, "half the filters of every layer (a predefined ratio), new weights, trained for "
          "the dense run's compute (Liu et al. 2019)", settings={"keep": KEEP})
def _scratch_b(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    # With a predefined ratio the architecture is known before any training (chapter 5): no dense phase to pay for.
    # Which filters L1 pruning would remove does not matter for a network whose weights are all drawn anew.
    dense = build_model(protocol.model_name, seed=seed)
    pruned = copy.deepcopy(dense)
    apply_masks(pruned, units("l1", exclude=VGG_CLASSIFIER)(pruned, 1.0 - KEEP))
    small = shrink(pruned)
    scratch = reinitialized(small, seed=derive_seed(seed, "fresh init"))
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

    return cached_run("capstone-slimming-strength", {**protocol.key(), "strengths": SLIMMING_STRENGTHS,
                                                            "keep": KEEP, "floor": SLIMMING_FLOOR}, compute)


def _slimming_recipe(config: TrainConfig) -> TrainConfig:
    """Sparsity training with SGD, as the paper (and chapter 5): Adam would undo the L1 term's weighting."""
    return replace(config, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step")


@register("network slimming", "structured", 5, "L1 on BatchNorm scales while training, one global threshold, fine-tune",
          settings={"keep": KEEP, "strengths": SLIMMING_STRENGTHS, "floor": SLIMMING_FLOOR})
def _slimming(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    plan = budgets(protocol.epochs, seed)
    model = build_model(protocol.model_name, seed=seed)
    train(model, protocol.data, _slimming_recipe(plan["dense"]), hooks=[BatchNormL1(slimming_strength(protocol)),
                                                                        *ledger.hooks()], progress=False)
    small = slim(model, 1.0 - KEEP, SLIMMING_FLOOR)
    finetune(small, protocol.data, plan["finetune"], extra_hooks=ledger.hooks(), progress=False)
    return small


@register("feature-map DPP", "structured", 7, "learned k of n filters per layer, then removed physically",
          settings={"keep": KEEP})
def _feature_map_dpp(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
    config = budgets(protocol.epochs, seed)["dpp"]
    hook = dpp_hook(1.0 - KEEP, protocol.data, config, seed, VGG_CLASSIFIER, granularity="feature_map")
    model = train_dpp(build_model(protocol.model_name, seed=seed), protocol.data, config, hook, ledger.hooks())
    return shrink(model)


# ------------------------------------------------------------------------ running one method

def run_method(name: str, protocol: Protocol, sparsity: float, seed: int) -> RunRecord:
    """Run one registered method once (no cache) and measure it into the common record."""
    if name not in METHODS:
        raise ValueError(f"No method called {name!r}; the registry has {sorted(METHODS)}.")
    method = METHODS[name]
    started = time.perf_counter()
    ledger = Ledger(protocol)
    model = method.runner(protocol, sparsity, seed, ledger)
    masks = weight_masks(get_masks(model))
    epochs, flops = ledger.totals()
    dense_budget = ledger.dense_budget_flops()
    costs = layer_costs(model)
    kept = sum(int(masks[f"{n}.weight"].sum()) if f"{n}.weight" in masks else int(w)  # the mask's count: a kept
               for n, w in zip(costs.layer, costs.weights))                           # weight may be exactly 0
    structured = method.family == "structured"
    parameters = kept + int(costs.biases.sum())
    return RunRecord(method=name, family=method.family, sparsity=sparsity, seed=seed,
                     val_acc=evaluate(model, protocol.data.val), test_acc=evaluate(model, protocol.data.test),
                     measured_sparsity=1.0 - kept / ledger.dense_weights if structured else mask_sparsity(masks),
                     weights_kept=kept, parameters=parameters, macs=int(costs.effective_macs.sum()),
                     bytes=4 * parameters, train_epochs=epochs, train_flops=flops / dense_budget,
                     train_flops_total=flops, seconds=time.perf_counter() - started, settings=dict(method.settings),
                     masks={n: m.bool().cpu() for n, m in masks.items()},
                     model=copy.deepcopy(model).cpu().eval() if structured else None)
