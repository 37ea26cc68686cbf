"""Chapter 9's experiments: a small character-level transformer, trained once per seed and pruned in one shot.

The pruning methods (magnitude, Wanda, SparseGPT) live in :mod:`course_lib.pruning.one_shot`, the text in
:mod:`course_lib.text`. This module trains the chapter's language model with the course's one dense trainer
(:func:`~course_lib.cache.trained_baseline`, on the :class:`~course_lib.training.NextToken` task), and runs the
chapter's experiments over seeds, each seed with its own model and its own calibration draw:

* :func:`pruning_runs` - test perplexity of every method at every sparsity and N:M pattern, and each pruned layer's
  reconstruction error on held-out text;
* :func:`rescaling_runs` - the same pruning after a rescaling that leaves the model's function unchanged but gives a
  few input channels very large activations, as large language models have;
* :func:`calibration_runs` - how many calibration sequences the methods need, and whether each layer should be
  calibrated on the already-pruned model (sequential, as both papers do) or on the dense one;
* :func:`recovery_runs` - a short fine-tuning with the masks fixed, beside the dense model trained as long.

:func:`fill_cache` runs them all (``python -m course_lib.chapters.ch09_one_shot_transformers``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from course_lib.cache import Baseline, trained_baseline
from course_lib.claims import leader, why_not_separated
from course_lib.costs import saved_size, time_interleaved, to_sparse_csr
from course_lib.data import DataSplits
from course_lib.experiments import cache_command, over_seeds
from course_lib.devices import model_device
from course_lib.masks import get_masks, remove_masks, unmasked_copy
from course_lib.profiles import Profile, by_profile, get_profile, shifted_seed
from course_lib.pruning import one_shot
from course_lib.pruning.one_shot import NM, Method
from course_lib.pruning.procedures import finetune
from course_lib.text import CharVocab, corpus_files, read_documents, text_splits
from course_lib.training import NextToken, TrainConfig, steps_per_epoch

MODEL = "char-transformer"
TASK = NextToken()
# LLaMA-2-7B's WikiText-2 perplexity (per token) pruned in one shot with 128 calibration sequences, from Wanda's
# README (github.com/locuslab/wanda, "LLaMA-2 results"): pattern -> method -> perplexity.
LITERATURE: dict[str, dict[str, float]] = {
    "dense": {"dense": 5.12},
    "50 %": {"magnitude": 14.89, "SparseGPT": 6.51, "Wanda": 6.42},
    "4:8": {"magnitude": 16.48, "SparseGPT": 8.12, "Wanda": 7.97},
    "2:4": {"magnitude": 54.59, "SparseGPT": 10.17, "Wanda": 11.02},
}
NAMES: dict[str, str] = {"magnitude": "magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}  # as tables print them
CALIBRATION_BATCH = 16  # windows per calibration forward pass (the statistics are sums: only memory depends on it)


@dataclass(frozen=True)
class Budget:
    """The chapter's budget in one profile: the model, its training, and the experiments' sizes.

    Attributes:
        width, depth, heads, context: the :class:`~course_lib.models.CharTransformer`.
        steps, batch_size, lr: its training (Adam, cosine schedule to zero).
        calibration_windows: calibration sequences (training windows of ``context`` characters) per seed.
        eval_windows: test windows every perplexity is measured on (the same for every run).
        sparsities: unstructured sparsities of the perplexity curve.
        nm: N:M patterns, ``(n kept, of m)``: ``(2, 4)`` is 2:4.
        calibration_sizes: calibration sequences tried by :func:`calibration_runs`.
        recovery_steps: fine-tuning steps of :func:`recovery_runs`, with ``recovery_lr``.
        rescaled_channels, rescale_factors: :func:`rescaling_runs`' channels per LayerNorm and their factors.
    """

    width: int
    depth: int
    context: int
    steps: int
    calibration_windows: int
    eval_windows: int
    sparsities: tuple[float, ...]
    calibration_sizes: tuple[int, ...]
    recovery_steps: int
    heads: int = 4
    batch_size: int = 32
    lr: float = 3e-3
    recovery_lr: float = 3e-4
    nm: tuple[NM, ...] = ((2, 4), (4, 8))
    rescaled_channels: int = 8
    rescale_factors: tuple[float, ...] = (10.0, 100.0)


BUDGETS = {
    "quick": Budget(width=64, depth=2, context=32, steps=600, calibration_windows=32, eval_windows=256,
                    sparsities=(0.3, 0.5, 0.7), calibration_sizes=(1, 8, 32), recovery_steps=60),
    "full": Budget(width=128, depth=2, context=64, steps=2400, calibration_windows=64, eval_windows=512,
                   sparsities=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8), calibration_sizes=(1, 4, 16, 64, 128),
                   recovery_steps=200),
}


def budget(profile: Profile) -> Budget:
    """This profile's :class:`Budget`."""
    return by_profile(profile, BUDGETS)


@dataclass(frozen=True)
class Pattern:
    """Where the zeros may go: an unstructured ``sparsity`` (a share of every row) or ``nm = (n kept, m)``."""

    sparsity: float | None = None
    nm: NM | None = None

    @property
    def label(self) -> str:
        """``"50 %"`` or ``"2:4"``."""
        return f"{self.nm[0]}:{self.nm[1]}" if self.nm else f"{self.sparsity:.0%}".replace("%", " %")

    @property
    def share_pruned(self) -> float:
        """The share of each row's weights the pattern removes."""
        return 1 - self.nm[0] / self.nm[1] if self.nm else float(self.sparsity)


def patterns(b: Budget) -> list[Pattern]:
    """The budget's unstructured sparsities, then its N:M patterns."""
    return [Pattern(sparsity=s) for s in b.sparsities] + [Pattern(nm=nm) for nm in b.nm]


# --- the model and its data ---------------------------------------------------------------------------------

def text_data(profile: Profile) -> tuple[DataSplits, CharVocab]:
    """The corpus (:mod:`course_lib.text`) cut into windows of the budget's context; documents dealt to the splits
    with split seed 0, so every seed's model reads the same text."""
    return text_splits(read_documents(corpus_files()), context=budget(profile).context, seed=0)


def model_options(profile: Profile, vocab: CharVocab) -> dict[str, int]:
    """The constructor arguments of the chapter's :class:`~course_lib.models.CharTransformer`."""
    b = budget(profile)
    return {"vocab_size": vocab.size, "context": b.context, "width": b.width, "depth": b.depth, "heads": b.heads}


def train_config(profile: Profile, splits: DataSplits, seed: int) -> TrainConfig:
    """Adam at the budget's rate with a cosine schedule, for exactly ``budget.steps`` steps."""
    b = budget(profile)
    epochs = math.ceil(b.steps / steps_per_epoch(len(splits.train), b.batch_size))
    return TrainConfig(epochs=epochs, steps=b.steps, batch_size=b.batch_size, lr=b.lr, seed=seed)


def language_model(profile: Profile, seed: int, progress: bool = True) -> Baseline:
    """The chapter's trained dense model of ``seed``, from the run cache (trained, seeded, the first time)."""
    splits, vocab = text_data(profile)
    return trained_baseline(MODEL, splits, train_config(profile, splits, seed), progress=progress,
                            options=model_options(profile, vocab), task=TASK)


def eval_windows(profile: Profile, splits: DataSplits) -> TensorDataset:
    """The test windows every perplexity of the chapter is measured on: the first ``eval_windows`` of the test split."""
    x, y = splits.test.tensors
    return TensorDataset(x[:budget(profile).eval_windows], y[:budget(profile).eval_windows])


def perplexity(model: nn.Module, windows: TensorDataset) -> float:
    """``exp`` of the mean cross-entropy per character: how many characters the model hesitates between."""
    return math.exp(TASK.score(model, windows))


@torch.no_grad()
def window_nats(model: nn.Module, windows: TensorDataset) -> torch.Tensor:
    """Mean cross-entropy (nats per character) of every window: :func:`perplexity` is ``exp`` of their mean."""
    was_training = model.training
    model.eval()
    x, y, device = *windows.tensors, model_device(model)
    nats = torch.cat([nn.functional.cross_entropy(model(xb.to(device)).transpose(1, 2), yb.to(device),
                                                  reduction="none").mean(1).cpu()
                      for xb, yb in zip(x.split(256), y.split(256))])
    model.train(was_training)
    return nats


def paired_standard_error(first: torch.Tensor, second: torch.Tensor) -> float:
    """The standard error, in percent of perplexity, of the perplexity ratio of two models scored on the same
    windows, from their :func:`window_nats`: the spread of their per-window difference over the square root of the
    number of windows. Two pruned models whose perplexities differ by less than about twice this could have swapped
    on other text."""
    difference = first - second
    return 100 * float(difference.std() / len(difference) ** 0.5)  # exp(d) - 1 ≈ d for small d


def noise_floors(runs: pd.DataFrame) -> pd.Series:
    """The noise floor of each pattern, in percent of perplexity: twice the largest paired standard error
    (``paired se`` of :func:`pruning_runs`) of any two methods at that pattern, on any seed. A per-seed difference
    below it names no direction. It grows with sparsity: the more a model is pruned, the more two pruned models
    disagree window by window."""
    if "paired se" not in runs.columns:
        raise ValueError("the table has no 'paired se' column: pass pruning_runs(profile), which records it.")
    return (2 * runs.dropna(subset=["paired se"]).groupby("pattern", sort=False)["paired se"].max()).rename(
        "noise floor (%)")


def relative_excess(table: pd.DataFrame, first: str, second: str, pattern: str) -> pd.Series:
    """Per seed, how much higher ``second``'s perplexity is than ``first``'s at ``pattern``, in percent
    (positive: ``first`` is better). ``table`` is :func:`pruning_runs`' (or any table with ``seed``, ``method``,
    ``pattern`` and ``perplexity`` columns)."""
    at = table[table["pattern"] == pattern].set_index(["method", "seed"])["perplexity"]
    if first not in at.index.get_level_values(0) or second not in at.index.get_level_values(0):
        raise ValueError(f"the table has no rows of {first!r} and {second!r} at {pattern!r}; its methods there are "
                         f"{sorted(set(at.index.get_level_values(0)))}.")
    return 100 * (at[second] / at[first] - 1)


def perplexity_verdict(excess: pd.Series, first: str, second: str, noise: float) -> str:
    """A line on per-seed :func:`relative_excess` values that asserts nothing: ``first`` (or ``second``) "lower on
    all n seeds" when every seed agrees by more than ``noise`` percent (the pattern's :func:`noise_floors`), else
    "not separated" and why."""
    values = {int(seed): float(v) for seed, v in excess.items()}
    ahead = leader(values, first, second, noise)
    word = (f"{ahead} lower on all {len(values)} seeds" if ahead else
            "not separated: " + why_not_separated(values, noise, first, second, f"the noise floor ({noise:.2f} %)"))
    per_seed = ", ".join(f"{v:+.1f}" for v in values.values())
    return (f"{second}'s perplexity over {first}'s: mean {sum(values.values()) / len(values):+.1f} % "
            f"(per seed {per_seed}) -> {word}")


def calibration_batches(splits: DataSplits, windows: int, seed: int) -> list[torch.Tensor]:
    """``windows`` training windows drawn with ``seed``, in batches of :data:`CALIBRATION_BATCH`. Draws of one seed
    nest: the first 4 windows of a draw of 16 are the draw of 4."""
    x = splits.train.tensors[0]
    if not 1 <= windows <= len(x):
        raise ValueError(f"calibration needs between 1 and {len(x)} training windows, got {windows}.")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(shifted_seed(seed)))[:windows]
    return list(x[order].split(CALIBRATION_BATCH))


def pruned_copy(model: nn.Module, method: Method, pattern: Pattern, batches: Sequence[torch.Tensor],
                sequential: bool = True, damping_scale: one_shot.DampingScale = "mean",
                update: bool = False) -> nn.Module:
    """A copy of ``model`` with every block linear pruned by ``method`` (masks attached); ``model`` is unchanged.
    ``damping_scale`` and ``update`` go to :func:`~course_lib.pruning.one_shot.prune_one_shot`."""
    copied = copy.deepcopy(model)
    one_shot.prune_one_shot(copied, copied.block_linears(), method, batches, sparsity=pattern.sparsity,
                            nm=pattern.nm, sequential=sequential, damping_scale=damping_scale, update=update)
    return copied


def layer_errors(dense: nn.Module, pruned: nn.Module, hessians: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each pruned layer's relative reconstruction error ``‖(W − Ŵ) X‖² / ‖W X‖²`` on the dense model's inputs ``X``
    (given as ``H = X Xᵀ / tokens``, e.g. of held-out text): the layer-wise objective of one-shot pruning."""
    dense_modules, pruned_modules = dict(dense.named_modules()), dict(pruned.named_modules())
    errors = {}
    for name, H in hessians.items():
        W = dense_modules[name].weight.detach().double()
        delta = W - pruned_modules[name].weight.detach().double()
        errors[name] = float(torch.trace(delta @ H @ delta.T) / torch.trace(W @ H @ W.T))
    return errors


def dense_hessians(model: nn.Module, windows: TensorDataset) -> dict[str, torch.Tensor]:
    """``H = X Xᵀ / tokens`` of every block linear's inputs on ``windows``, in the dense model."""
    stats = one_shot.calibrate(model, model.block_linears(), windows.tensors[0].split(CALIBRATION_BATCH))
    return {name: s.hessian() for name, s in stats.items()}


# --- the experiments ------------------------------------------------------------------------------------------

def _parts(profile: Profile, splits: DataSplits, **more: Any) -> dict[str, Any]:
    return {"data": splits.key(), "budget": budget(profile), **more}


def pruning_runs(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """Every method at every pattern of the budget, over seeds (cached): one row per (seed, method, pattern) with
    the test ``perplexity``, per pruned layer its relative reconstruction error on the test windows, and
    ``paired se``: the largest :func:`paired_standard_error` of this model against the other methods' at the same
    pattern and seed (what a verdict between them must clear). The dense model is the row of method ``"dense"``."""
    splits, _ = text_data(profile)
    b, windows = budget(profile), eval_windows(profile, splits)

    def run(seed: int) -> list[dict[str, Any]]:
        dense = language_model(profile, seed, progress).model
        batches, hessians = calibration_batches(splits, b.calibration_windows, seed), dense_hessians(dense, windows)
        rows = [{"method": "dense", "pattern": "dense", "sparsity": 0.0, "perplexity": perplexity(dense, windows)}]
        for pattern in patterns(b):
            nats, at = {}, []
            for method in one_shot.METHODS:
                model = pruned_copy(dense, method, pattern, batches)
                nats[method] = window_nats(model, windows)
                at.append({"method": NAMES[method], "pattern": pattern.label, "sparsity": pattern.share_pruned,
                           "perplexity": math.exp(float(nats[method].mean())), **layer_errors(dense, model, hessians)})
            for row, method in zip(at, one_shot.METHODS):
                row["paired se"] = max(paired_standard_error(nats[method], nats[other])
                                       for other in nats if other != method)
            rows += at
        return rows

    return over_seeds("ch9-pruning", _parts(profile, splits), run, profile.seeds(), progress=progress)


UPDATED = ("magnitude", "wanda")  # the masks update_runs repairs with SparseGPT's update


def update_runs(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """Magnitude's and Wanda's masks at 50 % and 2:4, with the kept weights repaired by SparseGPT's update (Wanda's
    paper's ablation), over seeds (cached), calibrated as :func:`pruning_runs` is. Set beside :func:`pruning_runs`'
    rows, they split SparseGPT's lead into what its mask choice buys and what its weight update buys."""
    splits, _ = text_data(profile)
    b, windows = budget(profile), eval_windows(profile, splits)

    def run(seed: int) -> list[dict[str, Any]]:
        dense = language_model(profile, seed, progress).model
        batches, rows = calibration_batches(splits, b.calibration_windows, seed), []
        for pattern in (Pattern(sparsity=0.5), Pattern(nm=(2, 4))):
            for method in UPDATED:
                model = pruned_copy(dense, method, pattern, batches, update=True)
                rows.append({"method": f"{NAMES[method]} + update", "pattern": pattern.label,
                             "perplexity": perplexity(model, windows)})
        return rows

    return over_seeds("ch9-update", _parts(profile, splits), run, profile.seeds(), progress=progress)


def pruning_times(model: nn.Module, batches: Sequence[torch.Tensor], layer: str, pattern: Pattern,
                  rounds: int = 5) -> pd.Series:
    """Milliseconds each method takes to prune one layer from its calibration statistics (collected once, beforehand),
    timed in alternating rounds (:func:`~course_lib.costs.time_interleaved`): what the pruning itself costs."""
    calibration = one_shot.calibrate(model, [layer], batches)[layer]
    original = dict(model.named_modules())[layer]

    def prune(method: Method) -> Any:
        return lambda: one_shot.prune_layer(copy.deepcopy(original), method, calibration, pattern.sparsity, pattern.nm)

    times = time_interleaved({NAMES[m]: prune(m) for m in one_shot.METHODS}, rounds=rounds, repeats=1)
    return times.median().rename("ms per layer")


def error_against_perplexity(table: pd.DataFrame, layers: Sequence[str], pattern: str, noise: float) -> str:
    """Does the layer error order the methods as perplexity does, at ``pattern``? For every pair of methods that
    perplexity separates (:func:`perplexity_verdict`'s rule, with the pattern's ``noise``), whether the mean layer
    error (over layers and seeds) puts the same one ahead; pairs that perplexity does not separate are counted apart."""
    at = table[table["pattern"] == pattern]
    error = at.groupby("method")[list(layers)].mean().mean(axis=1)
    methods = [m for m in NAMES.values() if m in error.index]
    agree, disagree, open_pairs = [], [], []
    for i, first in enumerate(methods):
        for second in methods[i + 1:]:
            values = {int(k): float(v) for k, v in relative_excess(table, first, second, pattern).items()}
            lower = leader(values, first, second, noise)
            if lower is None:
                open_pairs.append(f"{first}/{second}")
            else:
                by_error = first if error[first] < error[second] else second
                (agree if by_error == lower else disagree).append(f"{lower} < {second if lower == first else first}")
    return (f"{pattern}: perplexity separates {len(agree) + len(disagree)} of {len(agree) + len(disagree) + len(open_pairs)} "
            f"pairs; the layer error orders {len(agree)} of them the same way"
            + (f" (not: {', '.join(disagree)})" if disagree else "")
            + (f"; not separated by perplexity: {', '.join(open_pairs)}" if open_pairs else ""))


def rescaled(model: nn.Module, channels: int, factor: float, seed: int = 0) -> nn.Module:
    """A copy of ``model`` that computes the same function, with ``channels`` input channels of every LayerNorm ->
    linear pair (``ln1`` -> ``attn.qkv``, ``ln2`` -> ``fc1``) ``factor`` times larger: the LayerNorm's scale and
    shift of those channels are multiplied by ``factor`` and the linear layer's matching weight columns divided by
    it. The channels are drawn with ``seed``, anew for each pair.

    This is how large language models look to a pruner: a few input features with very large activations (Dettmers
    et al. 2022), and weights that are not large on them. Magnitude pruning reads only the weights, so it now prunes
    those columns first; Wanda's score ``|W_ij| · ‖X_j‖`` is unchanged.
    """
    if not 0 < channels <= model.blocks[0].ln1.normalized_shape[0] or factor <= 0:
        raise ValueError(f"rescale between 1 and the width's channels by a positive factor; got {channels} "
                         f"channels, factor {factor}.")
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(shifted_seed(seed))
    with torch.no_grad():
        for block in copied.blocks:
            for norm, linear in ((block.ln1, block.attn.qkv), (block.ln2, block.fc1)):
                chosen = torch.randperm(linear.in_features, generator=generator)[:channels]
                norm.weight[chosen] *= factor
                norm.bias[chosen] *= factor
                linear.weight[:, chosen] /= factor
    return copied


RESCALING_METHODS: dict[str, tuple[Method, one_shot.DampingScale]] = {  # the rows of rescaling_runs
    "magnitude": ("magnitude", "mean"), "Wanda": ("wanda", "mean"), "SparseGPT": ("sparsegpt", "mean"),
    "SparseGPT, own damping": ("sparsegpt", "own")}


def rescaling_runs(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """Each of :data:`RESCALING_METHODS` at 50 % and 2:4 on the model and on its :func:`rescaled` copies (cached,
    over seeds): one row per (seed, factor, method, pattern) with the perplexity and the share of the mask that
    equals the mask chosen on the un-rescaled model. "SparseGPT, own damping" damps each input by a share of its own
    ``H_jj`` instead of the mean diagonal: the control that says whether the damping is what moves SparseGPT. Rows
    of method ``"dense"`` give the rescaled dense model's perplexity and its largest logit change (the function is
    unchanged up to rounding)."""
    splits, _ = text_data(profile)
    b, windows = budget(profile), eval_windows(profile, splits)

    def run(seed: int) -> list[dict[str, Any]]:
        dense = language_model(profile, seed, progress).model
        batches = calibration_batches(splits, b.calibration_windows, seed)
        chosen = [Pattern(sparsity=0.5), Pattern(nm=(2, 4))]
        first_masks: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        rows = []
        for factor in (1.0, *b.rescale_factors):
            model = rescaled(dense, b.rescaled_channels, factor, seed) if factor != 1.0 else dense
            with torch.no_grad():
                change = float((model(windows.tensors[0][:8]) - dense(windows.tensors[0][:8])).abs().max())
            rows.append({"factor": factor, "method": "dense", "pattern": "dense",
                         "perplexity": perplexity(model, windows), "largest logit change": change})
            for pattern in chosen:
                for name, (method, damping_scale) in RESCALING_METHODS.items():
                    pruned = pruned_copy(model, method, pattern, batches, damping_scale=damping_scale)
                    masks = get_masks(pruned)
                    first = first_masks.setdefault((name, pattern.label), masks)
                    same = sum(int((masks[n] == first[n]).sum()) for n in masks) / sum(m.numel() for m in masks.values())
                    rows.append({"factor": factor, "method": name, "pattern": pattern.label,
                                 "perplexity": perplexity(pruned, windows), "same mask": same})
        return rows

    return over_seeds("ch9-rescaling", _parts(profile, splits), run, profile.seeds(), progress=progress)


def input_norm_ratios(model: nn.Module, batches: Sequence[torch.Tensor]) -> pd.Series:
    """Per block linear: the largest input channel's norm ``‖X_j‖₂`` over the median one. Large language models have
    per-token activations 20 times the typical size and more at their outlier features (Dettmers et al. 2022); this
    norm over all tokens is a milder statistic, and a ratio near 1 means no channel stands out."""
    stats = one_shot.calibrate(model, model.block_linears(), batches)
    norms = {name: s.input_norms() for name, s in stats.items()}
    return pd.Series({name: float(n.max() / n.median()) for name, n in norms.items()}, name="max / median ‖X_j‖")


CALIBRATED = ("wanda", "sparsegpt")  # the methods that read calibration data


def calibration_runs(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """Wanda and SparseGPT at 2:4 with each of the budget's calibration sizes, calibrated sequentially (each layer on
    the model whose earlier layers are already pruned) and on the dense model, over seeds (cached)."""
    splits, _ = text_data(profile)
    b, windows = budget(profile), eval_windows(profile, splits)

    def run(seed: int) -> list[dict[str, Any]]:
        dense = language_model(profile, seed, progress).model
        rows = []
        for size in b.calibration_sizes:
            batches = calibration_batches(splits, size, seed)
            for method in CALIBRATED:
                for sequential in (True, False):
                    model = pruned_copy(dense, method, Pattern(nm=(2, 4)), batches, sequential=sequential)
                    rows.append({"windows": size, "tokens": size * b.context, "method": NAMES[method],
                                 "calibration": "sequential" if sequential else "dense-calibrated",
                                 "perplexity": perplexity(model, windows)})
        return rows

    return over_seeds("ch9-calibration", _parts(profile, splits), run, profile.seeds(), progress=progress)


def recovery_config(profile: Profile, seed: int) -> TrainConfig:
    """The short fine-tuning of :func:`recovery_runs`: ``recovery_steps`` Adam steps at ``recovery_lr``, cosine."""
    b = budget(profile)
    return TrainConfig(epochs=1, steps=b.recovery_steps, batch_size=b.batch_size, lr=b.recovery_lr, seed=seed)


def recovery_runs(profile: Profile, progress: bool = True) -> pd.DataFrame:
    """Every method at 2:4, fine-tuned for a few steps with its mask fixed, and the dense model trained as long (the
    control: more training helps a dense model too), over seeds (cached). One row per (seed, method) with the
    perplexity before and after, and the share of the pruned weights whose *stored* value (``original``, under the
    mask) is exactly zero after fine-tuning: the model computes with ``original × mask`` whatever is stored, and
    :func:`~course_lib.masks.zero_pruned_weights`, a hook of every masked fine-tuning, keeps the stored values at
    zero too, so that a checkpoint saved without its masks is as sparse."""
    splits, _ = text_data(profile)
    b, windows = budget(profile), eval_windows(profile, splits)

    def run(seed: int) -> list[dict[str, Any]]:
        dense = language_model(profile, seed, progress).model
        batches = calibration_batches(splits, b.calibration_windows, seed)
        config, rows = recovery_config(profile, seed), []
        for method in ("dense", *one_shot.METHODS):
            model = copy.deepcopy(dense) if method == "dense" else pruned_copy(dense, method, Pattern(nm=(2, 4)),
                                                                              batches)
            pruned_before = _zeros(model)
            before = perplexity(model, windows)
            finetune(model, splits, config, task=TASK, progress=progress, desc=f"seed {seed}: {method}, fine-tuning")
            stored = _zeros(model, stored=True)
            rows.append({"method": NAMES.get(method, method), "before": before, "after": perplexity(model, windows),
                         "pruned weights stored as zero": (stored & pruned_before).sum().item()
                         / max(1, pruned_before.sum().item()) if method != "dense" else float("nan")})
        return rows

    return over_seeds("ch9-recovery", _parts(profile, splits), run, profile.seeds(), progress=progress)


def _zeros(model: nn.Module, stored: bool = False) -> torch.Tensor:
    """Every block linear weight's zeros, flattened into one boolean vector: of the weight the model computes with,
    or (``stored=True``) of the values it stores under its mask (``original``), which a checkpoint saves."""
    modules = dict(model.named_modules())
    weights = [modules[name].parametrizations.weight.original
               if stored and parametrize.is_parametrized(modules[name], "weight") else modules[name].weight
               for name in model.block_linears()]
    return torch.cat([(w.detach() == 0).flatten() for w in weights])


# --- what the masks save -------------------------------------------------------------------------------------

def pack_n_of_m(weight: torch.Tensor, m: int) -> dict[str, torch.Tensor]:
    """An N:M-sparse weight as it is stored for sparse tensor cores: the kept values of each group of ``m``, and each
    kept value's position in its group in ``ceil(log2 m)`` bits (2 bits for 2:4), packed into bytes.

    Raises:
        ValueError: if the groups of ``m`` do not all keep the same number of weights (not an N:M pattern).
    """
    rows, columns = weight.shape
    if columns % m:
        raise ValueError(f"the rows ({columns} inputs) must split into groups of m = {m}.")
    groups = weight.detach().reshape(rows, columns // m, m)
    kept = groups != 0
    n = int(kept.sum(-1).max())
    if not bool((kept.sum(-1) == n).all()):
        raise ValueError("every group must keep the same number of weights (an N:M pattern); prune with nm=(n, m) "
                         "first, or store the weight as CSR.")
    positions = torch.sort(torch.where(kept, torch.arange(m), m), dim=-1).values[..., :n]  # kept positions, in order
    values = torch.gather(groups, -1, positions)
    bits = max(1, math.ceil(math.log2(m)))
    bit_string = ((positions.flatten()[:, None] >> torch.arange(bits)) & 1).flatten().to(torch.uint8)
    padded = torch.cat([bit_string, bit_string.new_zeros(-len(bit_string) % 8)]).reshape(-1, 8)
    packed = (padded << torch.arange(8, dtype=torch.uint8)).sum(-1).to(torch.uint8)
    return {"values": values.reshape(rows, -1).clone(), "positions": packed,
            "shape": torch.tensor([rows, columns, n, m])}


def unpack_n_of_m(packed: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dense weight of :func:`pack_n_of_m`'s output (the inverse: zeros where nothing was kept)."""
    rows, columns, n, m = (int(v) for v in packed["shape"])
    bits = max(1, math.ceil(math.log2(m)))
    bit_string = ((packed["positions"][:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).flatten()
    count = rows * (columns // m) * n
    positions = (bit_string[:count * bits].reshape(count, bits).long() << torch.arange(bits)).sum(-1)
    groups = torch.zeros(rows, columns // m, m, dtype=packed["values"].dtype)
    groups.scatter_(-1, positions.reshape(rows, columns // m, n), packed["values"].reshape(rows, columns // m, n))
    return groups.reshape(rows, columns)


def compact_csr(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as CSR with PyTorch's own 64-bit indices, each part in a buffer of its own size. (The index
    tensors ``to_sparse_csr()`` returns can be views of a dense-sized buffer, and ``torch.save`` writes a tensor's
    whole buffer: saved as it is, such a CSR file holds a dense-sized block of indices.)"""
    csr = to_sparse_csr(weight.detach())
    return torch.sparse_csr_tensor(csr.crow_indices().clone(), csr.col_indices().clone(), csr.values().clone(),
                                   csr.shape, check_invariants=False)


def saved_sizes(model: nn.Module, m: int | None = None) -> dict[str, int]:
    """File sizes in bytes of a pruned model saved three ways: its ``state_dict`` as it is (the zeros stored as
    numbers, as every checkpoint of a masked model is), with the block linears as CSR (:func:`compact_csr`), and -
    for an N:M model (``m`` given) - with them packed by :func:`pack_n_of_m`."""
    plain = unmasked_copy(model).state_dict()
    linears = {f"{name}.weight" for name in model.block_linears()}
    sizes = {"dense file (zeros stored)": saved_size(plain),
             "CSR (64-bit indices)": saved_size({k: compact_csr(v) if k in linears else v for k, v in plain.items()})}
    if m is not None:
        sizes[f"N:M packed (values + {math.ceil(math.log2(m))}-bit positions)"] = saved_size(
            {k: pack_n_of_m(v, m) if k in linears else v for k, v in plain.items()})
    return sizes


def explorer_models(dense: nn.Module, batches: Sequence[torch.Tensor], sparsities: Sequence[float],
                    nm: Sequence[NM] = ((2, 4),), progress: bool = True) -> dict[tuple[str, str], nn.Module]:
    """Every method's pruned model at each setting (and ``"0 %"``, the dense model), keyed by (method, setting), for
    :func:`~course_lib.widgets.one_shot_explorer`. The masks are folded into the weights: the models run faster."""
    settings = [Pattern(sparsity=s) for s in sparsities] + [Pattern(nm=pair) for pair in nm]
    models: dict[tuple[str, str], nn.Module] = {}
    for method in one_shot.METHODS:
        models[(NAMES[method], "0 %")] = dense
        for pattern in tqdm(settings, desc=f"{NAMES[method]}: pruning for the explorer", disable=not progress,
                            leave=False):
            model = pruned_copy(dense, method, pattern, batches)
            remove_masks(model)
            models[(NAMES[method], pattern.label)] = model
    return models


def fill_cache(profile: Profile) -> pd.DataFrame:
    """Train the chapter's models and run every experiment of the chapter through the cache."""
    return pd.concat([pruning_runs(profile), update_runs(profile), rescaling_runs(profile), calibration_runs(profile),
                      recovery_runs(profile)], ignore_index=True)


if __name__ == "__main__":
    cache_command("Train chapter 9's language models and fill the cache with the chapter's experiments.",
                  fill_cache)
