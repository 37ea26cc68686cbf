"""Chapter 6's experiment: every way to get a sparse LeNet-300-100, on one matched budget.

Every run trains a fresh network for the **same number of steps** with the
same recipe; only the way the mask is found differs:

=================  ==============================================================
``dense``          no mask: the ceiling
``small-dense``    a narrower dense LeNet-300-100 with as many parameters as the sparse ones (no layer
                   narrower than the 10 classes), at its own learning rate chosen on validation
``AGP``            dense at first, then its hidden layers pruned by global magnitude along the cubic curve,
                   the classifier left dense, as many weights in all (its own learning rate, chosen on validation)
``static``         a random mask with the layer densities, fixed
``SET``            drop the smallest ``|w|``, regrow at random, every ``update_every`` steps
``RigL``           drop the smallest ``|w|``, regrow the largest ``|dense gradient|``
=================  ==============================================================

Static, SET and RigL are run with uniform and ERK layer densities. Each run
carries a :class:`~course_lib.sparse.tracking.MaskTracker`, so that its row
holds the training FLOPs, the in-time over-parameterisation rate and the
mask snapshots the chapter's figures and widget read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd
from torch import nn

from course_lib.cache import cached_run
from course_lib.data import DataSplits, load_splits
from course_lib.models import LENET_CLASSIFIER, build_model, lenet300_of_size
from course_lib.experiments import cache_command, over_seeds
from course_lib.profiles import Profile, by_profile
from course_lib.pruning.procedures import Pruned, gradual_pruning, magnitude
from course_lib.costs import layer_costs, prunable_layers
from course_lib.sparse.densities import Distribution
from course_lib.sparse.flops import training_step_flops
from course_lib.sparse.schedules import END_FRACTION, MASK_UPDATES, update_every
from course_lib.sparse.tracking import MaskTracker
from course_lib.sparse.updaters import SET, DropAndGrow, RigL, Static
from course_lib.training import Hook, TrainConfig, evaluate, recipe, train

SPARSE_LR = 3e-3  # Adam's peak rate of the base recipe (1e-3, the course default, trained sparse nets worse)
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)  # Adam peak rates the full profile's searches try on validation (seed 0)
AGP_BEGIN_FRACTION = 0.25  # AGP trains dense for the first quarter, then prunes until T_end

SPARSE_TRAINERS: dict[str, type[DropAndGrow]] = {"static": Static, "SET": SET, "RigL": RigL}


@dataclass(frozen=True)
class Budget:
    """What chapter 6 spends in one profile.

    Attributes:
        train_size: training images of every run (the full profile's 55,000 made the chapter take 35 minutes).
        epochs: every run (dense, small-dense, AGP, static, SET, RigL) trains for the same steps.
        sparsities: the sparsities the methods are compared at.
        lengths: the regime experiment's training lengths, as multiples of ``epochs`` (Evci et al. found RigL's
            lead over SET grows with training time and report RigL at 5x).
        sgd_rates: the SGD regime's peak rates (SGD with momentum 0.9, Evci et al.'s optimizer), tried on
            validation for SET as the shared rate was; with one rate (quick) there is nothing to choose.
        adam_rates: the Adam peak rates every search of the chapter tries on validation (the shared rate, AGP's,
            RigL's, small-dense's). Quick gives one, so nothing is searched: in its three epochs 1e-2 and 3e-2
            score within the validation noise of each other, and which one wins can flip with the last digits of
            the arithmetic (another thread count), which trains every run of the chapter at another rate.
            1e-2 is what every search chose in the full profile's runs.
    """

    train_size: int
    epochs: int
    sparsities: tuple[float, ...]
    lengths: tuple[int, ...]
    sgd_rates: tuple[float, ...]
    adam_rates: tuple[float, ...]


REGIME_SPARSITY = 0.95  # where SET and RigL are trained for longer (in both profiles' list of sparsities)
DENSE_CLASSIFIER = "uniform, classifier dense"  # the distribution label of classifier_runs
GROW_BATCHES = 8  # the gradient experiment's RigL sums the dense gradients of this many batches (128 images each)
BUDGETS = {"quick": Budget(train_size=20_000, epochs=3, sparsities=(0.9, 0.95), lengths=(1, 2), sgd_rates=(0.1,),
                           adam_rates=(1e-2,)),
           "full": Budget(train_size=20_000, epochs=4, sparsities=(0.9, 0.95, 0.98), lengths=(1, 3, 5),
                          sgd_rates=(0.03, 0.1, 0.3, 1.0), adam_rates=LEARNING_RATES)}


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def sparse_splits(profile: Profile) -> DataSplits:
    """The profile's data with the chapter's ``train_size`` training images (the same validation and test sets)."""
    return load_splits(profile, train_size=budget(profile).train_size)


def sparse_recipe(profile: Profile) -> TrainConfig:
    """The recipe of every run of chapter 6: the course's Adam + cosine, the chapter's epochs, ``SPARSE_LR``."""
    return recipe("lenet300", profile, epochs=budget(profile).epochs, lr=SPARSE_LR)


@functools.cache
def _dense_macs() -> dict[str, float]:
    """MACs per image of each layer of the dense LeNet-300-100: the unit of every run's training FLOPs."""
    return layer_costs(build_model("lenet300")).set_index("layer").macs.astype(float).to_dict()


def run_row(method: str, distribution: str, sparsity: float, model: nn.Module, data: DataSplits,
            tracker: MaskTracker) -> dict[str, object]:
    """One row of the chapter's table: accuracy, parameters in use, FLOPs, exploration and the mask trace.

    ``train_flops`` is relative to training the dense LeNet-300-100 on as many
    images (the course's run record counts it so everywhere);
    ``train_flops_total`` is the absolute count.
    """
    trace = tracker.trace
    assert trace is not None, "the tracker must have run as a training hook"
    active = sum(trace.densities[-1][n] * trace.weights[n] for n in trace.layers)
    biases = sum(layer.bias.numel() for layer in model.modules() if isinstance(layer, nn.Linear))
    return {"method": method, "distribution": distribution, "sparsity": sparsity,
            "val_acc": evaluate(model, data.val), "test_acc": evaluate(model, data.test),
            "parameters": round(active) + biases,
            "train_flops": trace.training_flops / (trace.images * training_step_flops(_dense_macs())),
            "train_flops_total": trace.training_flops,
            "inference_flops": tracker.inference_flops(model), "ever_active": trace.ever_active_total[-1],
            "trace": trace}


def _train_tracked(model: nn.Module, data: DataSplits, config: TrainConfig, hooks: Sequence[Hook],
                   snapshot_every: int, desc: str, progress: bool) -> MaskTracker:
    tracker = MaskTracker(snapshot_every)
    train(model, data, config, hooks=[*hooks, tracker], progress=progress, desc=desc)
    return tracker


def _sparse_row(method: str, distribution: str, sparsity: float, updater: DropAndGrow, data: DataSplits,
                config: TrainConfig, desc: str, progress: bool) -> dict[str, object]:
    """A fresh LeNet-300-100 (``config.seed``'s weights) trained under ``updater`` with a tracker: its row.

    Every sparse run of the chapter is this: the trainers and their settings differ, the recipe of the
    comparison does not.
    """
    model = build_model("lenet300", seed=config.seed)
    tracker = _train_tracked(model, data, config, [updater], updater.update_every, desc, progress)
    return run_row(method, distribution, sparsity, model, data, tracker)


def dense_run(data: DataSplits, config: TrainConfig, seed: int, progress: bool = True) -> dict[str, object]:
    """The dense LeNet-300-100 of one seed, with the chapter's recipe and a tracker (for its FLOPs)."""
    config = replace(config, seed=seed)
    model = build_model("lenet300", seed=seed)
    tracker = _train_tracked(model, data, config, [], update_every(config, len(data.train)), "dense", progress)
    return run_row("dense", "dense", 0.0, model, data, tracker)


def small_dense_parameters(sparsity: float) -> int:
    """What a sparse LeNet-300-100 keeps at ``sparsity``: that share of the weights, and every bias (the target of
    :func:`~course_lib.models.lenet300_of_size`)."""
    layers = [m for m in build_model("lenet300").modules() if isinstance(m, nn.Linear)]
    weights, biases = sum(m.weight.numel() for m in layers), sum(m.bias.numel() for m in layers)
    return round((1.0 - sparsity) * weights) + biases


@dataclass(frozen=True)
class RateSearch:
    """One learning-rate search of the chapter: ``trial`` (a run of seed 0's weights with the recipe it is given)
    trained at every one of ``rates`` (a budget's ``adam_rates`` or ``sgd_rates``), scored on validation. ``name``
    keys its cache entry."""

    name: str
    data: DataSplits
    config: TrainConfig
    sparsity: float
    trial: Callable[[TrainConfig], nn.Module]
    rates: tuple[float, ...]

    def tried(self) -> tuple[float, ...]:
        """The rates this search trains at."""
        return self.rates

    def scores(self) -> dict[float, float]:
        """Validation accuracy (%) at each rate (cached)."""
        def compute() -> dict[float, float]:
            return {lr: evaluate(self.trial(replace(self.config, lr=lr, seed=0)), self.data.val)
                    for lr in self.tried()}

        return cached_run(self.name, {"data": self.data.key(), "config": self.config, "sparsity": self.sparsity,
                                      "lrs": self.tried()}, compute)

    def best(self) -> float:
        """The rate with the best validation accuracy (the first of equals); a single rate is chosen untried."""
        if len(self.tried()) == 1:
            return self.tried()[0]
        scores = self.scores()
        return max(scores, key=scores.get)


def _erk_trial(trainer: type[DropAndGrow], sparsity: float, data: DataSplits) -> Callable[[TrainConfig], nn.Module]:
    """One learning-rate trial for a :class:`RateSearch`: ``trainer`` with ERK densities at ``sparsity``, seed 0's
    weights, trained with the trial's recipe."""
    def run(trial: TrainConfig) -> nn.Module:
        model = build_model("lenet300", seed=0)
        updater = trainer(sparsity, "erk", update_every=update_every(trial, len(data.train)), end_fraction=END_FRACTION)
        train(model, data, trial, hooks=[updater], progress=False)
        return model

    return run


def _recipe_search(profile: Profile, data: DataSplits) -> RateSearch:
    config, sparsities = sparse_recipe(profile), budget(profile).sparsities
    middle = sparsities[len(sparsities) // 2]
    return RateSearch("ch6-recipe-lr", data, config, middle, _erk_trial(SET, middle, data), budget(profile).adam_rates)


def tuned_recipe(profile: Profile, data: DataSplits) -> TrainConfig:
    """:func:`sparse_recipe` with the peak rate chosen on validation: SET with ERK densities at the chapter's middle
    sparsity, seed 0, over the budget's ``adam_rates`` (cached; one rate, as in quick, is used untried). Every run
    of the chapter uses it but small-dense and AGP, which get rates of their own (:func:`small_dense_lr`,
    :func:`agp_lr`)."""
    return replace(sparse_recipe(profile), lr=_recipe_search(profile, data).best())


def agp_pruning(data: DataSplits, sparsity: float, config: TrainConfig, seed: int, extra_hooks: Sequence[Hook] = (),
                progress: bool = False) -> Pruned:
    """AGP from a fresh LeNet-300-100: dense for the first quarter, then the hidden layers pruned by global magnitude
    until T_end, the classifier left dense (:func:`hidden_sparsity` keeps as many weights in all as ``sparsity`` of
    every layer). Global magnitude over all three layers would starve the 100x10 classifier - claim 1's lesson - and
    the comparison would measure that, not "dense first, then pruned"."""
    return gradual_pruning(build_model("lenet300", seed=seed), data, hidden_sparsity(sparsity),
                           magnitude("global", exclude=LENET_CLASSIFIER), config, end_fraction=END_FRACTION,
                           updates=MASK_UPDATES, begin_fraction=AGP_BEGIN_FRACTION, extra_hooks=extra_hooks,
                           progress=progress)


def _agp_search(data: DataSplits, config: TrainConfig, rates: tuple[float, ...]) -> RateSearch:
    def agp_run(trial: TrainConfig) -> nn.Module:
        return agp_pruning(data, REGIME_SPARSITY, trial, seed=0).model

    return RateSearch("ch6-agp-lr", data, config, REGIME_SPARSITY, agp_run, rates)


def agp_lr(data: DataSplits, config: TrainConfig, rates: tuple[float, ...]) -> float:
    """AGP's own peak learning rate: the best validation accuracy of ``rates`` (the budget's ``adam_rates``) at
    95 %, seed 0 (cached). AGP starts dense and prunes as it goes; the recipe's rate was tuned for a sparse trainer."""
    return _agp_search(data, config, rates).best()


def rigl_lr(data: DataSplits, config: TrainConfig, rates: tuple[float, ...]) -> float:
    """RigL's own peak learning rate: the best validation accuracy of ``rates`` (the budget's ``adam_rates``) for
    RigL with ERK densities at :data:`REGIME_SPARSITY`, seed 0 (cached). The chapter's shared rate was chosen for SET; a trainer
    that grows by the gradient may want another, and a comparison at a rival's rate is not a fair one."""
    return _rigl_search(data, config, rates).best()


def _rigl_search(data: DataSplits, config: TrainConfig, rates: tuple[float, ...]) -> RateSearch:
    return RateSearch("ch6-rigl-lr", data, config, REGIME_SPARSITY, _erk_trial(RigL, REGIME_SPARSITY, data), rates)


def own_rate_runs(data: DataSplits, config: TrainConfig, sparsity: float, seed: int, rates: tuple[float, ...],
                  progress: bool = True) -> list[dict[str, object]]:
    """RigL (ERK) at its own learning rate (:func:`rigl_lr` over ``rates``), otherwise as in :func:`sparsity_runs`.
    One seed."""
    config = replace(config, lr=rigl_lr(data, replace(config, seed=0), rates), seed=seed)
    updater = RigL(sparsity, "erk", update_every=update_every(config, len(data.train)), end_fraction=END_FRACTION,
                   seed=seed)
    return [{**_sparse_row("RigL", "erk", sparsity, updater, data, config, f"RigL (erk), lr {config.lr:g}", progress),
             "lr": config.lr}]


def own_rate_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                        progress: bool = True) -> pd.DataFrame:
    """:func:`own_rate_runs` at :data:`REGIME_SPARSITY` for every seed, through the run cache (code-keyed). When
    RigL's own rate is the shared one, section 3's RigL already ran at it: no rows."""
    rates = budget(profile).adam_rates
    if rigl_lr(data, replace(config, seed=0), rates) == config.lr:
        return pd.DataFrame(columns=["method", "distribution", "sparsity", "test_acc", "lr", "seed"])
    return over_seeds("ch6-rigl-own-rate", {"data": data.key(), "config": config, "sparsity": REGIME_SPARSITY,
                                            "adam_rates": rates},
                      lambda seed: own_rate_runs(data, config, REGIME_SPARSITY, seed, rates, progress=progress),
                      profile.seeds(), progress=progress, code=__name__)


def sgd_search(profile: Profile, data: DataSplits, config: TrainConfig) -> RateSearch:
    """The SGD regime's rate search: SET with ERK densities at :data:`REGIME_SPARSITY`, seed 0, trained with
    ``config`` but SGD with momentum 0.9 instead of Adam, at every rate of the profile's ``sgd_rates``."""
    sgd = replace(config, optimizer="sgd", momentum=0.9, seed=0)
    return RateSearch("ch6-sgd-lr", data, sgd, REGIME_SPARSITY, _erk_trial(SET, REGIME_SPARSITY, data),
                      rates=budget(profile).sgd_rates)


def sgd_recipe(profile: Profile, data: DataSplits, config: TrainConfig) -> TrainConfig:
    """``config`` with SGD and momentum 0.9 instead of Adam, at the rate :func:`sgd_search` chooses (the only rate,
    when the profile gives one: no search is run)."""
    search = sgd_search(profile, data, config)
    return replace(search.config, lr=search.best(), seed=config.seed)


def sgd_runs(data: DataSplits, config: TrainConfig, sparsity: float, seed: int,
             progress: bool = True) -> list[dict[str, object]]:
    """SET and RigL (ERK) trained with ``config``, an SGD recipe (:func:`sgd_recipe`), otherwise as in
    :func:`sparsity_runs`. One seed.

    Evci et al. trained with SGD and momentum; the chapter's recipe uses Adam, whose per-weight step sizes treat a
    freshly grown weight differently from a settled one. If the optimizer is what turned RigL ≥ SET around here,
    these runs put it back.
    """
    config = replace(config, seed=seed)
    delta_t = update_every(config, len(data.train))
    return [_sparse_row(method, "erk", sparsity,
                        SPARSE_TRAINERS[method](sparsity, "erk", update_every=delta_t, end_fraction=END_FRACTION, seed=seed),
                        data, config, f"{method} (erk), SGD lr {config.lr:g}", progress) | {"lr": config.lr}
            for method in ("SET", "RigL")]


def sgd_experiment(profile: Profile, data: DataSplits, config: TrainConfig, progress: bool = True) -> pd.DataFrame:
    """:func:`sgd_runs` at :data:`REGIME_SPARSITY` with :func:`sgd_recipe`, every seed, through the run cache."""
    sgd = sgd_recipe(profile, data, config)
    return over_seeds("ch6-sgd", {"data": data.key(), "config": sgd, "sparsity": REGIME_SPARSITY},
                      lambda seed: sgd_runs(data, sgd, REGIME_SPARSITY, seed, progress=progress),
                      profile.seeds(), progress=progress, code=__name__)


def _small_dense_search(data: DataSplits, config: TrainConfig, sparsity: float, rates: tuple[float, ...]) -> RateSearch:
    def small_run(trial: TrainConfig) -> nn.Module:
        model = lenet300_of_size(small_dense_parameters(sparsity), seed=0)
        train(model, data, trial, progress=False)
        return model

    return RateSearch("ch6-small-dense-lr", data, config, sparsity, small_run, rates)


def small_dense_lr(data: DataSplits, config: TrainConfig, sparsity: float, rates: tuple[float, ...]) -> float:
    """Small-dense's own peak learning rate at ``sparsity``: the best validation accuracy of ``rates`` (the budget's
    ``adam_rates``) on seed 0 (cached). The recipe's rate was tuned for a sparse trainer; a narrow dense network may
    want another."""
    return _small_dense_search(data, config, sparsity, rates).best()


def rate_searches(profile: Profile, data: DataSplits, config: TrainConfig) -> pd.DataFrame:
    """Every learning-rate search of the chapter: validation accuracy (%, seed 0) at each rate of the budget's
    ``adam_rates``, one row per search, and the rate it chose. ``config`` is :func:`tuned_recipe`'s.
    The entries are the ones the runs read (cached): printing them trains nothing new. With one rate (quick)
    nothing was searched, and the table holds only the rate every run used."""
    at_seed_0, recipe_search, rates = replace(config, seed=0), _recipe_search(profile, data), budget(profile).adam_rates
    searches = {f"SET, ERK {recipe_search.sparsity:.0%} (the shared rate)": recipe_search,
                f"AGP {REGIME_SPARSITY:.0%}": _agp_search(data, at_seed_0, rates),
                f"RigL, ERK {REGIME_SPARSITY:.0%}": _rigl_search(data, at_seed_0, rates),
                **{f"small-dense {s:.0%}": _small_dense_search(data, at_seed_0, s, rates)
                   for s in budget(profile).sparsities}}
    if len(rates) == 1:  # no search: scoring the one rate would train a run that nothing reads
        return pd.DataFrame({"chosen": [search.best() for search in searches.values()]},
                            index=pd.Index(list(searches), name="search"))
    table = pd.DataFrame({name: search.scores() for name, search in searches.items()}).T
    return table.assign(chosen=[search.best() for search in searches.values()]).rename_axis("search")


def sparsity_runs(data: DataSplits, config: TrainConfig, sparsity: float, seed: int, rates: tuple[float, ...],
                  distributions: Sequence[Distribution] = ("uniform", "erk"),
                  progress: bool = True) -> list[dict[str, object]]:
    """Small-dense, AGP, and static/SET/RigL with each layer-density ``distribution``, at one sparsity. One seed.
    Small-dense and AGP train at their own rates, the best of ``rates`` on validation."""
    config = replace(config, seed=seed)
    delta_t = update_every(config, len(data.train))
    rows = []
    small = lenet300_of_size(small_dense_parameters(sparsity), seed=seed)  # biases stay dense in all
    lr = small_dense_lr(data, replace(config, seed=0), sparsity, rates)
    tracker = _train_tracked(small, data, replace(config, lr=lr), [], delta_t, "small-dense", progress)
    rows.append({**run_row("small-dense", "dense", sparsity, small, data, tracker), "lr": lr})

    tracker = MaskTracker(delta_t)
    agp_config = replace(config, lr=agp_lr(data, replace(config, seed=0), rates))
    agp = agp_pruning(data, sparsity, agp_config, seed, extra_hooks=[tracker], progress=progress)
    rows.append({**run_row("AGP", "global magnitude", sparsity, agp.model, data, tracker), "lr": agp_config.lr})

    for distribution in distributions:
        for method, trainer in SPARSE_TRAINERS.items():
            updater = trainer(sparsity, distribution, update_every=delta_t, end_fraction=END_FRACTION, seed=seed)
            rows.append(_sparse_row(method, distribution, sparsity, updater, data, config, f"{method} ({distribution})",
                                    progress))
    return rows


def comparison_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                          sparsities: Sequence[float] | None = None, progress: bool = True) -> pd.DataFrame:
    """The chapter's main comparison through the run cache (code-keyed): the dense network, then
    :func:`sparsity_runs` at each of ``sparsities`` (default: the profile's), every seed; one table.

    The capstone reads the same entries to set chapter 6's verdicts beside its own.
    """
    key, seeds, rates = {"data": data.key(), "config": config}, profile.seeds(), budget(profile).adam_rates
    tables = [over_seeds("ch6-dense", key, lambda seed: dense_run(data, config, seed, progress), seeds,
                         progress=progress, code=__name__)]
    for sparsity in budget(profile).sparsities if sparsities is None else sparsities:
        tables.append(over_seeds(f"ch6-sparsity-{sparsity:g}", {**key, "sparsity": sparsity, "adam_rates": rates},
                                 lambda seed, s=sparsity: sparsity_runs(data, config, s, seed, rates, progress=progress),
                                 seeds, progress=progress, code=__name__))
    return pd.concat(tables, ignore_index=True)


def hidden_sparsity(sparsity: float) -> float:
    """The uniform sparsity of LeNet-300-100's hidden layers that, with the classifier dense, keeps as many weights
    in all as ``sparsity`` of every layer does (0.95 -> about 0.954)."""
    weights = {name: layer.weight.numel() for name, layer in prunable_layers(build_model("lenet300")).items()}
    classifier = sum(weights[name] for name in LENET_CLASSIFIER)
    hidden = sum(weights.values()) - classifier
    return 1.0 - ((1.0 - sparsity) * sum(weights.values()) - classifier) / hidden


def classifier_runs(data: DataSplits, config: TrainConfig, sparsity: float, seed: int,
                    progress: bool = True) -> list[dict[str, object]]:
    """Static, SET and RigL with uniform densities in the hidden layers and the classifier left dense. One seed.

    Uniform prunes the 100x10 output layer as hard as the others (at 95 %, 50 of its 1,000 weights are left),
    while ERK keeps it nearly dense. These runs ask whether ERK's lead over uniform is that one layer (Evci et
    al.'s uniform leaves the first layer dense for a similar reason). The hidden layers are pruned a little
    harder (:func:`hidden_sparsity`), so that the network keeps as many weights in all as ERK's and uniform's.
    """
    config = replace(config, seed=seed)
    delta_t = update_every(config, len(data.train))
    return [_sparse_row(method, DENSE_CLASSIFIER, sparsity,
                        trainer(hidden_sparsity(sparsity), "uniform", update_every=delta_t, end_fraction=END_FRACTION,
                                seed=seed, exclude=LENET_CLASSIFIER),
                        data, config, f"{method} (uniform, classifier dense)", progress)
            for method, trainer in SPARSE_TRAINERS.items()]


def classifier_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                          progress: bool = True) -> pd.DataFrame:
    """:func:`classifier_runs` at :data:`REGIME_SPARSITY` for every seed, through the run cache (code-keyed)."""
    return over_seeds("ch6-dense-classifier", {"data": data.key(), "config": config, "sparsity": REGIME_SPARSITY},
                      lambda seed: classifier_runs(data, config, REGIME_SPARSITY, seed, progress=progress),
                      profile.seeds(), progress=progress, code=__name__)


def length_runs(data: DataSplits, config: TrainConfig, sparsity: float, lengths: Sequence[int], seed: int,
                progress: bool = True) -> list[dict[str, object]]:
    """SET and RigL with ERK densities trained ``length`` times the recipe's epochs, for each of ``lengths``. One
    seed.

    The mask schedule stretches with the run (the same 25 updates before T_end, so ΔT grows with the length), as
    Evci et al.'s RigL 2x/5x runs stretch theirs. Length 1 is the chapter's own run (:func:`sparsity_runs` has it);
    the row's ``length`` says which.
    """
    rows = []
    for length in lengths:
        longer = replace(config, epochs=config.epochs * length, seed=seed)
        delta_t = update_every(longer, len(data.train))
        for method in ("SET", "RigL"):
            updater = SPARSE_TRAINERS[method](sparsity, "erk", update_every=delta_t, end_fraction=END_FRACTION,
                                               seed=seed)
            rows.append({**_sparse_row(method, "erk", sparsity, updater, data, longer, f"{method} (erk), {length}x",
                                       progress), "length": length})
    return rows


def length_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                      progress: bool = True) -> pd.DataFrame:
    """The regime experiment of the profile, through the run cache: :func:`length_runs` at :data:`REGIME_SPARSITY`
    for every length but 1, every seed. The notebook and ``python -m course_lib.chapters.ch06_sparse_training``
    share its cache entries (the key names this module's code, not the caller's)."""
    lengths = [n for n in budget(profile).lengths if n != 1]
    return over_seeds("ch6-lengths", {"data": data.key(), "config": config, "sparsity": REGIME_SPARSITY,
                                      "lengths": lengths},
                      lambda seed: length_runs(data, config, REGIME_SPARSITY, lengths, seed, progress=progress),
                      profile.seeds(), progress=progress, code=__name__)


def grow_gradient_runs(data: DataSplits, config: TrainConfig, sparsity: float, seed: int,
                       progress: bool = True) -> list[dict[str, object]]:
    """RigL (ERK) whose grow score sums the dense gradients of :data:`GROW_BATCHES` batches, not one. One seed.

    RigL ranks the inactive weights by one batch's gradient: Evci et al.'s batches held 4,096 images, ours 128,
    so our ranking is far noisier. Summing the gradients of the last few batches before each update (the
    ``grad_batches`` of :class:`~course_lib.sparse.updaters.RigL`) is the cheapest way to make it less noisy;
    each extra batch costs one more dense weight gradient, which the row's ``train_flops`` counts.
    """
    config = replace(config, seed=seed)
    delta_t = update_every(config, len(data.train))
    rigl = RigL(sparsity, "erk", update_every=delta_t, end_fraction=END_FRACTION, seed=seed,
                grad_batches=min(GROW_BATCHES, delta_t))
    return [{**_sparse_row("RigL", "erk", sparsity, rigl, data, config, f"RigL (erk), {rigl.grad_batches} batches",
                           progress), "grad_batches": rigl.grad_batches}]


def grow_gradient_experiment(profile: Profile, data: DataSplits, config: TrainConfig,
                             progress: bool = True) -> pd.DataFrame:
    """:func:`grow_gradient_runs` at :data:`REGIME_SPARSITY` for every seed, through the run cache (code-keyed)."""
    return over_seeds("ch6-grow-gradient", {"data": data.key(), "config": config, "sparsity": REGIME_SPARSITY,
                                            "grad_batches": GROW_BATCHES},
                      lambda seed: grow_gradient_runs(data, config, REGIME_SPARSITY, seed, progress=progress),
                      profile.seeds(), progress=progress, code=__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the run cache with the chapter's regime experiments, the longest part of a cold chapter
    (``python -m course_lib.chapters.ch06_sparse_training --help``)."""
    def fill(profile: Profile) -> pd.DataFrame:
        data = sparse_splits(profile)
        config = tuned_recipe(profile, data)
        return pd.concat([length_experiment(profile, data, config), grow_gradient_experiment(profile, data, config),
                          own_rate_experiment(profile, data, config), sgd_experiment(profile, data, config)])

    cache_command("Train SET and RigL for longer, RigL with a grow gradient summed over several batches, RigL at "
                  "its own learning rate and SET and RigL with SGD (chapter 6's regime experiments), and cache the "
                  "results.", fill, argv)


if __name__ == "__main__":
    main()
