"""Figures used across the chapters. Every figure has a title and labelled axes with units.

Each function draws into a Matplotlib ``Axes`` (made for you when not given)
and returns the ``Figure``, so a notebook cell can show it or save it.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from torch.utils.data import TensorDataset

from course_lib.training import History


def _percent_log_axis(ax: Axes) -> None:
    """A log-scaled x axis of "weights remaining (%)": plain numbers, densest on the right."""
    ax.set_xscale("log")
    low, high = sorted(ax.get_xlim())
    ax.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if low <= t <= high])
    ax.set_xlim(high, low)  # densest on the left, sparsest on the right
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _finish(fig: Figure, ax: Axes, legend_size: float | None = None) -> Figure:
    """The common ending of a line plot: light grid, legend, tight layout."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return fig


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax  # type: ignore[return-value]


def show_image(ax: Axes, image: torch.Tensor, title: str = "") -> None:
    """Draw one (1, 28, 28) or (28, 28) image in grey, without ticks."""
    ax.imshow(image.squeeze().cpu().numpy(), cmap="gray_r")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def sample_grid(dataset: TensorDataset, classes: Sequence[str], per_class: int = 4) -> Figure:
    """The first ``per_class`` images of every class: one column per class."""
    images, labels = dataset.tensors
    fig, axes = plt.subplots(per_class, len(classes), figsize=(len(classes) * 1.0, per_class * 1.05),
                             squeeze=False)
    for c, name in enumerate(classes):
        idx = torch.nonzero(labels == c).flatten()[:per_class]
        for j in range(per_class):
            ax = axes[j, c]
            if j < len(idx):
                show_image(ax, images[idx[j]], name if j == 0 else "")
            else:
                ax.axis("off")
    fig.suptitle(f"The first {per_class} training images of each class")
    fig.tight_layout()
    return fig


def class_counts(labels_by_split: Mapping[str, torch.Tensor], classes: Sequence[str],
                 ax: Axes | None = None) -> Figure:
    """Grouped bars: each class's share of the images of every split (shares, not counts: a 5,000-image split
    beside a 55,000-image one would be invisible), with the balanced share of 1 / classes as a line."""
    fig, ax = _axes(ax, (9, 3.2))
    width = 0.8 / len(labels_by_split)
    x = np.arange(len(classes))
    for i, (split, labels) in enumerate(labels_by_split.items()):
        shares = 100 * torch.bincount(labels, minlength=len(classes)).numpy() / len(labels)
        ax.bar(x + i * width, shares, width, label=f"{split} ({len(labels):,} images)")
    ax.axhline(100 / len(classes), color="black", linewidth=1, linestyle=":", label="balanced")
    ax.set_xticks(x + width * (len(labels_by_split) - 1) / 2, classes, rotation=30, ha="right")
    ax.set_ylabel("share of the split (%)")
    ax.set_xlabel("class")
    ax.set_title("Class balance of the splits")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, History]) -> Figure:
    """Training loss and validation accuracy per epoch, one line per run."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, h in histories.items():
        epochs = np.arange(1, len(h.train_loss) + 1)
        left.plot(epochs, h.train_loss, marker="o", label=name)
        right.plot(epochs, h.val_accuracy, marker="o", label=name)
    left.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (nats)")
    right.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                       ax: Axes | None = None, title: str = "Test accuracy per class", color: str = "tab:blue",
                       ranked: bool = False) -> Figure:
    """Horizontal bars: the share of each class's images classified correctly (``ranked``: worst class at the
    bottom, best at the top, so that the weak classes read at a glance; else in label order). ``color``: the
    model's colour in the chapter's other figures."""
    fig, ax = _axes(ax, (5, 3.5))
    acc = [100.0 * (predictions[labels == c] == c).float().mean().item() for c in range(len(classes))]
    order = sorted(range(len(classes)), key=lambda c: -acc[c]) if ranked else list(range(len(classes)))
    classes, acc = [classes[c] for c in order], [acc[c] for c in order]
    ax.barh(list(classes), acc, color=color)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title)
    for y, a in enumerate(acc):
        ax.text(min(a, 99), y, f"{a:.0f}", va="center", ha="right", color="white", fontsize=8)
    fig.tight_layout()
    return fig


def cost_dots(costs: Mapping[str, Mapping[str, float]], columns: Mapping[str, tuple[str, str]]) -> Figure:
    """One panel per cost, one dot per model on a log axis (costs span decades), each dot labelled with its value
    and its ratio to the cheapest model.

    ``columns`` maps a column of ``costs`` to its panel's (title, unit). Dots, not bars: a bar on a log axis
    starts at an arbitrary floor, so its length says nothing (1.9x can look like 10x); a dot's position and the
    printed ratio do.
    """
    across = min(3, len(columns))  # at most three panels a row: five in one row shrink to unreadable type
    down = -(-len(columns) // across)
    fig, axes = plt.subplots(down, across, figsize=(4.2 * across, 2.9 * down), squeeze=False)
    for spare in axes.flat[len(columns):]:
        spare.remove()
    names = list(costs)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (column, (title, unit)) in zip(axes.flat, columns.items()):
        values = [float(costs[name][column]) for name in names]
        cheapest = min(values)
        for row, (name, value) in enumerate(zip(names, values)):
            ax.plot(value, row, "o", markersize=8, color=colours[row % len(colours)])
            shown = f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"
            ax.annotate(f"{shown} ({value / cheapest:.1f}x)", (value, row), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks crowd a short log axis
        ax.set_xlim(cheapest / 4, max(values) * 4)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.6, len(names) - 0.3)
        ax.set_title(title)
        ax.set_xlabel(f"{unit} (log scale)")
    fig.suptitle("What each dense baseline costs (in brackets: the ratio to the cheapest network)")
    fig.tight_layout()
    return fig


def accuracy_vs_sparsity(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                         dense_accuracy: float | None = None, ax: Axes | None = None,
                         title: str = "Accuracy vs sparsity", ylabel: str = "accuracy (%)",
                         log_remaining: bool = False) -> Figure:
    """One line per method: accuracy against sparsity (or, log-scaled, against weights remaining).

    ``curves`` maps a label to ``(sparsities, accuracies)``, sparsities as fractions. A control - a label that
    starts with "random" (random mask, random re-init, random with a method's densities) - is drawn dashed, so that
    it stays apart from the method it controls where their points coincide.
    """
    fig, ax = _axes(ax, (6.5, 4))
    styles = _styles(list(curves))
    for label, (sparsities, accuracies) in curves.items():
        x = [100 * (1 - s) for s in sparsities] if log_remaining else [100 * s for s in sparsities]
        dashed = "--" if label.lower().startswith("random") else "-"
        ax.plot(x, accuracies, label=label, linestyle=dashed, **styles[label])
    if dense_accuracy is not None:
        ax.axhline(dense_accuracy, color="black", linestyle="--", linewidth=1, label="dense")
    if log_remaining:
        _percent_log_axis(ax)
        ax.set_xlabel("weights remaining (%, log scale)")
    else:
        ax.set_xlabel("sparsity (% of weights removed)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _finish(fig, ax)


def sensitivity(scan: pd.DataFrame, dense_accuracy: float | None = None, ax: Axes | None = None) -> Figure:
    """Validation accuracy when one layer alone is pruned, one line per layer.

    Layers are drawn in shades of one sequential colour map, input to output, so that no layer borrows a
    method's colour (the course keeps those for methods, in every figure)."""
    fig, ax = _axes(ax, (6.5, 4))
    layers = list(scan.groupby("layer", sort=False).groups)
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(layers), 2)))
    for shade, (layer, rows) in zip(shades, scan.groupby("layer", sort=False)):
        ax.plot(100 * rows["sparsity"], rows["accuracy"], marker="o", label=layer, color=shade)
    if dense_accuracy is not None:
        ax.axhline(dense_accuracy, color="black", linestyle="--", linewidth=1, label="dense")
    ax.set(xlabel="sparsity of that layer alone (%)", ylabel="validation accuracy (%)",
           title="Sensitivity scan: prune one layer, keep the rest dense")
    return _finish(fig, ax)


def layer_sparsity_bars(per_layer: Mapping[str, Mapping[str, float]], ax: Axes | None = None,
                        title: str = "Where the zeros are") -> Figure:
    """Grouped bars: sparsity of each layer (x) for each method (colour). Values in %."""
    fig, ax = _axes(ax, (6.5, 3.5))
    methods = list(per_layer)
    layers = list(next(iter(per_layer.values())))
    width = 0.8 / len(methods)
    x = np.arange(len(layers))
    styles = _styles(methods)  # "global 90 %" is drawn in global's colour, as in every other figure
    for i, method in enumerate(methods):
        ax.bar(x + i * width, [per_layer[method][layer] for layer in layers], width, label=method,
               color=styles[method]["color"])
    ax.set_xticks(x + width * (len(methods) - 1) / 2, layers)
    ax.set(xlabel="layer", ylabel="sparsity (%)", title=title, ylim=(0, 100))
    ax.legend()
    fig.tight_layout()
    return fig


def sparsity_schedule(schedules: Mapping[str, Sequence[tuple[int, float]]], ax: Axes | None = None) -> Figure:
    """Sparsity against training step for each schedule (steps, fractions)."""
    fig, ax = _axes(ax, (6.5, 3.5))
    styles = _styles(list(schedules))
    for label, points in schedules.items():
        steps, values = zip(*points)
        ax.step(steps, [100 * v for v in values], where="post", label=label, **styles[label])
    ax.set(xlabel="optimizer step", ylabel="sparsity (%)", title="When the weights are removed")
    return _finish(fig, ax)


def speedup_vs_macs(table: pd.DataFrame, ax: Axes | None = None,
                    title: str = "Measured speed-up vs MAC reduction") -> Figure:
    """Each pruned network as a point: MAC reduction (x) against measured latency speed-up (y).

    Points on the dashed diagonal would mean "latency follows MACs exactly".
    ``table`` needs columns ``MAC_reduction`` and ``speedup``, indexed by keep ratio.
    """
    fig, ax = _axes(ax, (5.5, 4))
    ax.plot(table["MAC_reduction"], table["speedup"], marker="o", label="measured")
    for keep, row in table.iterrows():
        ax.annotate(f"keep {keep:g}", (row["MAC_reduction"], row["speedup"]), textcoords="offset points",
                    xytext=(5, -10), fontsize=8)
    top = float(table["MAC_reduction"].max())
    ax.plot([1, top], [1, top], "k--", linewidth=1, label="speed-up = MAC reduction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="MAC reduction (x, dense / pruned, log scale)", ylabel="latency speed-up (x, log scale)", title=title)
    return _finish(fig, ax)


def bytes_vs_sparsity(table: pd.DataFrame, crossings: Mapping[str, float], ax: Axes | None = None,
                      title: str = "Bytes of one layer: dense vs sparse formats") -> Figure:
    """Bytes (KiB) of each storage format against sparsity, with each format's break-even sparsity marked.

    ``table`` and ``crossings`` come from :func:`course_lib.costs.storage_vs_sparsity`
    and :func:`course_lib.costs.break_even`.
    """
    fig, ax = _axes(ax, (7, 4))
    percent = 100 * table.index.to_numpy(dtype=float)
    for column in table.columns:
        (line,) = ax.plot(percent, table[column] / 1024, label=column, linestyle="--" if column == "dense" else "-")
        if column in crossings and np.isfinite(crossings[column]):
            ax.axvline(100 * crossings[column], color=line.get_color(), linewidth=0.8, alpha=0.6)
    ax.set_yscale("log")  # the high sparsities, where the formats part ways, span decades below dense
    ax.set(xlabel="sparsity (%)", ylabel="KiB (log scale)", title=title)
    return _finish(fig, ax, legend_size=8)


def layer_densities(densities: Mapping[str, Mapping[str, float]], ax: Axes | None = None,
                    title: str = "Weights kept per layer") -> Figure:
    """One line per method: percent of weights kept in each layer (log scale), layers in network order.

    A log axis has no zero, so an emptied layer (0 %) is drawn on a dotted floor line a decade below the smallest
    share kept anywhere, labelled as such, rather than at an invented small value."""
    fig, ax = _axes(ax, (6.5, 3.8))
    styles = _styles(list(densities))
    kept = [v for per_layer in densities.values() for v in per_layer.values() if v > 0]
    floor = min(kept, default=1.0) / 10
    for method, per_layer in densities.items():
        layers = list(per_layer)
        ax.plot(layers, [v if v > 0 else floor for v in per_layer.values()], label=method, **styles[method])
    if any(v <= 0 for per_layer in densities.values() for v in per_layer.values()):
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
        ax.annotate("0 % (layer emptied)", (0, floor), xycoords=("axes fraction", "data"), xytext=(4, 3),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set(xlabel="layer (input to output)", ylabel="weights kept (%, log scale)", title=title)
    return _finish(fig, ax, legend_size=8)


def _shaded_styles(labels: Sequence[str]) -> list[tuple[float, float, float]]:
    """A colour per label: the method's (:func:`method_style`), lightened for each further run of the same method;
    viridis for a label the table does not know."""
    bases = [(method_style(label) or {}).get("color") for label in labels]
    others = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(1, len(labels))))
    colours = []
    for i, base in enumerate(bases):
        if base is None:
            colours.append(tuple(others[i][:3]))
            continue
        same = [j for j, b in enumerate(bases) if b == base]
        light = 0.55 * same.index(i) / max(1, len(same) - 1) if len(same) > 1 else 0.0  # 0: the method's own colour
        colours.append(tuple(c + (1 - c) * light for c in to_rgb(base)))
    return colours


def validation_curves(histories: Mapping[str, History], title: str = "Validation accuracy during training",
                      dashed: Sequence[str] = (), cuts: Sequence[int] = ()) -> Figure:
    """Validation accuracy at every check of each run (``History.eval_steps``), its best point circled.

    The curves a single "early-stopping step" is read from: a flat top spanning several checks makes that step
    an accident of the check grid. Each run in its method's colour (runs of one method from dark to light, in the
    order given; a label the course's table does not know gets a colour of its own); runs named in
    ``dashed`` (controls) are drawn dashed. ``cuts`` marks the steps where the learning rate drops: a best check
    right after a drop is the schedule's doing, not the network's.
    """
    fig, ax = _axes(None, (6.5, 3.8))
    for colour, (label, history) in zip(_shaded_styles(list(histories)), histories.items()):
        if not history.eval_steps:
            raise ValueError(f"{label}: the run recorded no checks; train it with eval_every=... to draw its curve.")
        ax.plot(history.eval_steps, history.eval_scores, label=label, color=colour,
                linestyle="--" if label in dashed else "-", marker=".")
        best = history.early_stopping_step
        ax.plot(best, history.eval_scores[history.eval_steps.index(best)], "o", markersize=10, markerfacecolor="none",
                color=colour)
    for step in cuts:
        ax.axvline(step, color="grey", linestyle=":", linewidth=1)
    if cuts:
        ax.annotate("learning rate cut", (cuts[0], 0.02), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.set(xlabel="training step", ylabel="validation accuracy (%)", title=title)
    return _finish(fig, ax, legend_size=8)


# One colour and one marker per method in every figure of the course: a method looks the same in chapter 6 and in
# the capstone. Within any one chapter's figure the colours differ (tests/test_plots.py checks the sets that are
# drawn together); across the course no two methods share both colour and marker.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    # references
    "dense": ("#7f7f7f", "o"), "small-dense": ("#7f7f7f", "x"), "half-width": ("#525252", "p"),
    # pruning a trained network (chapters 1-3, 5)
    "magnitude + fine-tune": ("#1f77b4", "o"), "global": ("#1f77b4", "o"), "fine-tuned": ("#1f77b4", "o"),
    "L1 filters": ("#1f77b4", "s"), "local": ("#aec7e8", "s"), "local, fc3 at half rate": ("#b5cf6b", "D"),
    "row": ("#7b4173", "d"), "iterative magnitude": ("#393b79", "s"), "AGP": ("#9467bd", "D"),
    "one-shot": ("#1f77b4", "o"), "iterative": ("#393b79", "s"), "gradual": ("#9467bd", "D"),
    "lottery ticket": ("#ff7f0e", "^"), "ticket": ("#ff7f0e", "^"), "LR rewinding": ("#637939", "v"),
    "random re-init": ("#9c9ede", "v"), "random mask": ("#636363", "x"), "random": ("#636363", "x"),
    "random, global's sizes": ("#bdbdbd", "P"), "random, uniform densities": ("#969696", "X"),
    "random, SynFlow's densities": ("#000000", "P"),
    # chapter 5: the same architecture trained three ways
    "Scratch-E": ("#98df8a", "s"), "Scratch-B": ("#e6550d", "P"), "uniform Scratch-B": ("#5254a3", "X"),
    "network slimming": ("#e377c2", "h"), "dense, as long as Scratch-B": ("#c7c7c7", "o"),
    "fine-tuned, as long as Scratch-B": ("#08306b", "s"), "fine-tuned from the long dense": ("#9ecae1", "D"),
    "fine-tuned, gradual": ("#9467bd", "D"), "Scratch-E, dense-scale init": ("#8c6d31", "v"),
    "no penalty, slimmed, fine-tuned": ("#4292c6", "v"),
    "LR-rewound, as long as Scratch-B": ("#637939", "d"),
    # pruning at initialization (chapter 4)
    "magnitude": ("#6baed6", "o"), "SNIP": ("#e377c2", "P"), "GraSP": ("#c49c94", "<"), "SynFlow": ("#8c564b", "X"),
    # sparse training (chapter 6)
    "static": ("#bcbd22", "h"), "SET": ("#17becf", "<"), "RigL": ("#d62728", ">"),
    # learned masks (chapter 7)
    "DPP": ("#2ca02c", "*"), "feature-map DPP": ("#2ca02c", "*"), "DPP (feature-map)": ("#2ca02c", "*"),
    "DPP (kernel)": ("#98df8a", "*"), "DPP 2:4": ("#2ca02c", "*"), "ASP 2:4": ("#843c39", "s"),
    "random k per neuron": ("#636363", "x"), "random row": ("#636363", "x"), "unstructured (global)": ("#1f77b4", "o"),
    # one-shot pruning of a trained transformer (chapter 9; "magnitude" as in chapter 4)
    "Wanda": ("#e7ba52", "v"), "SparseGPT": ("#ad494a", "D"),
}


def method_style(label: str) -> dict[str, str] | None:
    """The colour and marker of a method, for ``plot(..., **style)``; ``None`` for a name the table does not know.

    A label is matched without regard to case, by the longest table name it starts with: "global + fine-tune"
    and "global, no retraining" are drawn as "global", "lottery ticket (chapter 3)" as "lottery ticket".
    """
    lowered = label.lower()
    names = [name for name in METHOD_STYLES if lowered.startswith(name.lower())]
    if not names:
        return None
    colour, marker = METHOD_STYLES[max(names, key=len)]
    return {"color": colour, "marker": marker}


def _styles(labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """Every label's style: the table's, or an unused colour (tab20's, in a cycle) with a plain marker."""
    taken = {to_hex(colour) for colour, _ in METHOD_STYLES.values()}
    palette = [to_hex(c) for c in plt.get_cmap("tab20").colors]
    spare = itertools.cycle([c for c in palette if c not in taken] or palette)
    return {label: method_style(label) or {"color": next(spare), "marker": "o"} for label in labels}


def method_dots(summary: pd.DataFrame, anchors: Mapping[str, float] | None = None, group: str = "group",
                title: str = "Test accuracy by method", ax: Axes | None = None,
                anchor_source: str = "literature") -> Figure:
    """Mean test accuracy per method as a dot with the standard deviation over seeds as its error bar, one cluster
    of dots per group.

    Dots, not bars: a bar's length reads as its size from zero, so a bar chart of accuracies between 80 and 88 %
    must either waste its height or cut its axis and make a half-point gap look large. A dot has no length.
    ``summary`` is :func:`course_lib.experiments.mean_std` grouped by ``[group, "method"]``. ``anchors`` (the
    literature's numbers, on other data) go into the legend, not onto the axis: they are not comparable with ours
    in absolute terms; ``anchor_source`` says where they come from (e.g. ``"ResNet-34-A, ImageNet"``).
    """
    fig, ax = _axes(ax, (9.5, 3.8))
    groups = list(dict.fromkeys(summary.index.get_level_values(0)))
    methods = list(dict.fromkeys(summary.index.get_level_values(1)))
    styles = _styles(methods)
    width = 0.7 / max(1, len(methods) - 1)
    for i, method in enumerate(methods):
        rows = [(g_i, summary.loc[(g, method)]) for g_i, g in enumerate(groups) if (g, method) in summary.index]
        label = method if not anchors or method not in anchors else f"{method} ({anchor_source}: {anchors[method]:g})"
        ax.errorbar([g_i + (i - (len(methods) - 1) / 2) * width for g_i, _ in rows], [r["mean"] for _, r in rows],
                    yerr=[r["std"] for _, r in rows], capsize=3, linestyle="none", markersize=7, label=label,
                    **styles[method])
    ax.set_xticks(range(len(groups)), [f"{g:g}" if isinstance(g, float) else str(g) for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set(xlabel=group, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the dots, never over them
    fig.tight_layout()
    return fig


def scale_histograms(scales: Mapping[str, Mapping[str, torch.Tensor]], title: str = "BatchNorm scales |γ|") -> Figure:
    """One histogram panel per training run: the ``|gamma|`` of all channels of all layers."""
    fig, axes = plt.subplots(1, len(scales), figsize=(4.5 * len(scales), 3.2), sharey=True, squeeze=False)
    top = max(float(torch.cat(list(s.values())).max()) for s in scales.values())
    for ax, (name, per_layer) in zip(axes[0], scales.items()):
        ax.hist(torch.cat(list(per_layer.values())).numpy(), bins=40, range=(0.0, top), color="tab:blue")
        ax.set(title=name, xlabel="|γ| (BatchNorm scale)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("channels")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _remaining_axis(fig: Figure, ax: Axes, dense: tuple[float, float] | None, title: str) -> Figure:
    """The dense band, a log axis of weights remaining, labels and the legend beside the plot."""
    if dense is not None:
        mean, std = dense
        ax.axhspan(mean - std, mean + std, color="black", alpha=0.1)
        ax.axhline(mean, color="black", linewidth=1, label="dense (mean ± std)")
    _percent_log_axis(ax)
    ax.set(xlabel="weights remaining (%, log scale)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def methods_vs_sparsity(summary: pd.DataFrame, dense: tuple[float, float] | None = None, ax: Axes | None = None,
                        labels: Mapping[str, str] | None = None, title: str = "Test accuracy at equal sparsity") -> Figure:
    """Mean test accuracy (± std over seeds) against weights remaining, one line per method: the course's figure
    for comparing methods (chapters 6, 7 and 8).

    ``summary`` is :func:`course_lib.experiments.mean_std` of the runs' records grouped by
    ``["method", "sparsity"]``, or by ``["method", "distribution", "sparsity"]`` when a method was run with
    several layer densities (chapter 6: the line's label names the density, uniform ones are dashed).
    ``labels`` rename methods in the legend; ``dense`` is the dense network's (mean, std), drawn as a band.
    """
    fig, ax = _axes(ax, (8, 4.5))
    lines = list(range(summary.index.nlevels - 1))  # one line per method (and distribution, when there is one)
    styles = _styles(list(dict.fromkeys(summary.index.get_level_values(0))))
    for key, rows in summary.groupby(level=lines, sort=False):
        method, distribution = (*key, None)[:2]
        label = (labels or {}).get(method, method)
        if distribution not in (None, "dense", "global magnitude"):
            label = f"{label} ({'ERK' if distribution == 'erk' else distribution})"
        sparsities = rows.index.get_level_values(-1)
        ax.errorbar([100 * (1 - s) for s in sparsities], rows["mean"], yerr=rows["std"], capsize=3,
                    linestyle="--" if distribution == "uniform" else "-", label=label, **styles[method],
                    markerfacecolor="white" if distribution == "uniform" else None)
    return _remaining_axis(fig, ax, dense, title)


def ranked_dots(summary: pd.DataFrame, dense: tuple[float, float] | None = None,
                title: str = "Methods ranked at each sparsity") -> Figure:
    """One panel per sparsity: the methods from best to worst mean test accuracy, each a dot with its standard
    deviation over seeds, in the method's colour. Reading down a panel is reading the ranking; overlapping error
    bars are neighbours the seeds do not separate.

    ``summary`` is :func:`course_lib.experiments.mean_std` grouped by ``["method", "sparsity"]``.
    """
    sparsities = list(dict.fromkeys(summary.index.get_level_values("sparsity")))
    styles = _styles(list(dict.fromkeys(summary.index.get_level_values("method"))))
    fig, axes = plt.subplots(1, len(sparsities), figsize=(4.2 * len(sparsities), 0.32 * len(styles) + 1.6),
                             squeeze=False)
    for ax, sparsity in zip(axes[0], sparsities):
        ranked = summary.xs(sparsity, level="sparsity").sort_values("mean")  # best at the top
        for y, (method, row) in enumerate(ranked.iterrows()):
            ax.errorbar(row["mean"], y, xerr=row["std"], capsize=3, linestyle="none", **styles[method])
        ax.set_yticks(range(len(ranked)), ranked.index)
        if dense is not None:
            grey = METHOD_STYLES["dense"][0]
            ax.axvspan(dense[0] - dense[1], dense[0] + dense[1], color=grey, alpha=0.25)
            ax.axvline(dense[0], color=grey, linewidth=1.5)
        ax.set(xlabel="test accuracy (%)", title=f"{sparsity:.0%} sparsity")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title + ("" if dense is None else " (grey line and band: dense, mean ± std)"))
    fig.tight_layout()
    return fig


def _two_and_five(value: float, _: object = None) -> str:
    """A log axis's minor tick label, for 2 and 5 times a power of ten only (0.2, 0.5, 2...): enough to read a value
    off, few enough not to collide."""
    leading = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(leading) in (2, 5) and abs(leading - round(leading)) < 1e-6 else ""


def accuracy_vs_cost(points: pd.DataFrame, title: str = "Accuracy against training compute") -> Figure:
    """One panel per sparsity: mean test accuracy against training FLOPs (× one dense run, log scale), one dot per
    method, and the Pareto front — the methods no other method beats on both accuracy and cost — joined by a line.

    Methods of the same cost (to three digits: e.g. the fixed masks, which all train at the density) are drawn side
    by side, a few percent apart, so that none hides another; the front joins the true positions.
    ``points`` is indexed by ``["method", "sparsity"]`` with columns ``test_acc`` and ``train_flops``.
    """
    sparsities = list(dict.fromkeys(points.index.get_level_values("sparsity")))
    styles = _styles(list(dict.fromkeys(points.index.get_level_values("method"))))
    fig, axes = plt.subplots(1, len(sparsities), figsize=(4.4 * len(sparsities) + 2.2, 4.0), squeeze=False,
                             sharey=False)
    for ax, sparsity in zip(axes[0], sparsities):
        here = points.xs(sparsity, level="sparsity")
        same_cost = here.groupby(here["train_flops"].map(lambda v: f"{v:.3g}"), sort=False)
        for _, group in same_cost:
            dodge = {method: 1.0 + 0.05 * (i - (len(group) - 1) / 2) for i, method in enumerate(group.index)}
            for method, row in group.iterrows():
                ax.plot(row["train_flops"] * dodge[method], row["test_acc"], linestyle="none", markersize=8,
                        alpha=0.85, label=method, **styles[method])
        front = pareto_front(here["train_flops"], here["test_acc"])
        ax.plot(here.loc[front, "train_flops"], here.loc[front, "test_acc"], color="black", linewidth=1,
                linestyle=":", drawstyle="steps-post", zorder=0, label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1 and 1, not 10⁻¹ and 10⁰
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax.set(xlabel="training FLOPs (× one dense run, log)", ylabel="test accuracy (%)",
               title=f"{sparsity:.0%} sparsity")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pareto_front(cost: pd.Series, accuracy: pd.Series) -> list:
    """The labels of the points no other point beats — at most the same cost with more accuracy, or less cost with
    at least the same accuracy — from the cheapest to the most expensive. Costs equal to three significant digits
    count as the same cost (four methods that train on the same sparse mask differ only in rounding)."""
    same = {label: float(f"{cost[label]:.3g}") for label in cost.index}
    front, best = [], float("-inf")
    for label in sorted(cost.index, key=lambda label: (same[label], -accuracy[label])):
        if accuracy[label] > best:
            front.append(label)
            best = accuracy[label]
    return front


def accuracy_vs_length(summary: pd.DataFrame, baseline_epochs: int, ax: Axes | None = None,
                       title: str = "Accuracy against training length") -> Figure:
    """Mean test accuracy (± std over seeds) against training length, one line per method.

    ``summary`` is :func:`course_lib.experiments.mean_std` grouped by ``["method", "length"]``, the length a
    multiple of ``baseline_epochs``.
    """
    fig, ax = _axes(ax, (6.5, 4))
    styles = _styles(list(dict.fromkeys(summary.index.get_level_values("method"))))
    for method, rows in summary.groupby(level="method", sort=False):
        lengths = rows.index.get_level_values("length")
        ax.errorbar([baseline_epochs * n for n in lengths], rows["mean"], yerr=rows["std"], capsize=3, label=method,
                    **styles[method])
    ax.set(xlabel="training length (epochs)", ylabel="test accuracy (%)", title=title)
    return _finish(fig, ax)


def setting_sweep(runs: pd.DataFrame, setting: str, panels: Mapping[str, str], log_x: bool = True,
                  title: str = "What one setting changes") -> Figure:
    """One panel per measured column: its mean (± std over the runs' seeds) against the values of ``setting``.

    ``runs`` has one row per run, a column ``setting`` and the columns named by ``panels`` (column -> axis label).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (column, label) in zip(axes[0], panels.items()):
        stats = runs.groupby(setting)[column].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3, color="black")
        if log_x:
            ax.set_xscale("log")
        ax.set(xlabel=setting.replace("_", " "), ylabel=label, title=label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mask_metrics(trace: pd.DataFrame, steps_per_epoch: int, title: str = "How the learned masks settle") -> Figure:
    """Three panels over training: each layer's confidence, each layer's diversity, and each run's temperature.

    ``trace`` has columns ``run``, ``layer``, ``step``, ``temperature``, ``confidence`` and ``diversity`` (the
    records of :class:`course_lib.dpp.pruner.DPP`). A layer whose diversity is NaN throughout — a layer of one row,
    or N:M tiles, where it means nothing — has no line in the diversity panel. Each run keeps one shade of DPP's
    colour in all three panels (its layers differ by line style); runs on the same temperature schedule share one
    τ line. Both metric axes run from 0 to 1: a change of a few hundredths, within the metrics' accuracy, should
    look small.
    """
    fig, (confidence, diversity, temperature) = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    runs = list(dict.fromkeys(trace["run"]))  # one colour per run in every panel, one line style per layer
    colour = dict(zip(runs, _shaded_styles(["DPP"] * len(runs))))  # every run is DPP: shades of its course colour
    marker = dict(zip(runs, itertools.cycle("osD^v")))  # and a marker of its own, since shades are close
    for run, by_run in trace.groupby("run", sort=False):
        for j, (layer, rows) in enumerate(by_run.groupby("layer", sort=False)):
            epochs, style = rows["step"] / steps_per_epoch, ("-", "--", ":", "-.")[j % 4]
            look = {"marker": marker[run], "markersize": 3.5, "color": colour[run], "linestyle": style}
            label = f"{run}: {layer.removeprefix('net.')}"
            confidence.plot(epochs, rows["confidence"], label=label, **look)
            if rows["diversity"].notna().any():
                diversity.plot(epochs, rows["diversity"], label=label, **look)
    shared: dict[tuple, tuple[pd.DataFrame, list[str]]] = {}  # runs on the same temperature schedule: one line
    for run, rows in trace.drop_duplicates(["run", "step"]).groupby("run", sort=False):
        key = (tuple(rows["step"]), tuple(np.round(rows["temperature"].to_numpy(), 6)))
        shared.setdefault(key, (rows, []))[1].append(run)
    for rows, names in shared.values():
        temperature.plot(rows["step"] / steps_per_epoch, rows["temperature"], color=colour[names[0]],
                         marker=marker[names[0]], markersize=3.5, label=" = ".join(names))
    confidence.set(ylim=(-0.02, 1.02), ylabel="confidence (0 to 1)", title="confidence per layer")
    diversity.set(ylim=(-0.02, 1.02), ylabel="diversity (0 to 1)", title="diversity per layer (rows that choose)")
    temperature.set(ylabel="temperature τ", title="temperature of each run")
    for ax in (confidence, diversity, temperature):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    confidence.legend(fontsize=7, loc="lower right")
    temperature.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def exploration(traces: Mapping[str, object], steps_per_epoch: int, ax: Axes | None = None,
                title: str = "In-time over-parameterisation: weights ever active") -> Figure:
    """The share of all weights that were active at some step so far, over training, one line per run.

    ``traces`` maps a label to a :class:`course_lib.sparse.tracking.MaskTrace`; the
    share of weights active *now* is drawn dotted for the first one (the density).
    """
    fig, ax = _axes(ax, (7, 4))
    for i, (label, trace) in enumerate(traces.items()):
        epochs = [step / steps_per_epoch for step in trace.steps]
        ax.plot(epochs, [100 * e for e in trace.ever_active_total], label=label, markevery=0.1,
                **(method_style(label) or {}))
        if i == 0:
            ax.plot(epochs, [100 * d for d in trace.density_total], linestyle=":", color="black",
                    label="weights active now (the density)")
    ax.set(xlabel="training time (epochs)", ylabel="weights ever active (% of all)", title=title)
    ax.set_ylim(bottom=0)
    return _finish(fig, ax, legend_size=8)


def in_degree_images(images: Mapping[str, torch.Tensor], reference: tuple[str, torch.Tensor] | None = None,
                     shape: tuple[int, int] = (28, 28),
                     title: str = "Active connections leaving each input pixel (first layer)",
                     reference_unit: str = "value") -> Figure:
    """One heat map per entry: each pixel's in-degree in the first layer, all on one colour scale.

    ``reference``: a ``(label, per-pixel values)`` map drawn first, on its own
    grey scale with its own colour bar labelled ``reference_unit`` (e.g. each
    pixel's spread over the training images).
    """
    panels = len(images) + (reference is not None)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels + 0.8, 3.6 if reference is not None else 2.9),
                             squeeze=False)
    axes = list(axes[0])
    if reference is not None:
        label, values = reference
        spread = axes[0].imshow(values.float().reshape(shape).numpy(), cmap="gray")
        axes[0].set_title(textwrap.fill(label, 26), fontsize=9)
        fig.colorbar(spread, ax=axes[0], location="bottom", shrink=0.9, pad=0.04, label=reference_unit)
    top = max(float(image.max()) for image in images.values())
    for ax, (label, image) in zip(axes[panels - len(images):], images.items()):
        shown = ax.imshow(image.float().reshape(shape).numpy(), cmap="viridis", vmin=0, vmax=top)
        ax.set_title(textwrap.fill(label, 26), fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[panels - len(images):], label="connections to the first hidden layer")
    fig.suptitle(title)
    return fig


def in_degree_by_spread(curves: Mapping[str, Sequence[float]], start: Sequence[float],
                        title: str = "Where the first layer's connections went") -> Figure:
    """Mean connections per pixel in each group of pixels ordered by how much they vary
    (:func:`course_lib.sparse.tracking.in_degree_by_spread`): one line per method at the end of training, in the
    course's colours, and the common start dashed. A line that rises to the right moved towards the varying pixels."""
    fig, ax = _axes(None, (7, 4))
    groups = range(1, len(start) + 1)
    ax.plot(groups, start, linestyle="--", color="black", label="start (random mask, the same for all)")
    for label, style in _styles(list(curves)).items():
        ax.plot(groups, curves[label], label=f"{label}, end", **style)
    ax.set(xlabel=f"pixels ordered by their spread over the training images ({len(start)} equal groups; "
                  "1 = varies least)", ylabel="connections per pixel (mean of the group)", title=title)
    ax.set_xticks(list(groups))
    return _finish(fig, ax, legend_size=8)


def perplexity_vs_sparsity(unstructured: pd.DataFrame, nm: pd.DataFrame | None = None,
                           dense: tuple[float, float] | None = None,
                           title: str = "One-shot pruning of the language model") -> Figure:
    """Test perplexity (mean ± std over seeds, log scale: lower is better) against sparsity, one line per method;
    beside it, when ``nm`` is given, the N:M patterns as dots.

    ``unstructured`` is :func:`course_lib.experiments.mean_std` grouped by ``["method", "sparsity"]``, ``nm`` grouped
    by ``["method", "pattern"]``; ``dense`` is the dense model's (mean, std), drawn as a band in both panels.
    """
    panels = 1 if nm is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 1.5, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1][:panels]}, sharey=True)
    methods = list(dict.fromkeys([*unstructured.index.get_level_values("method"),
                                  *([] if nm is None else nm.index.get_level_values("method"))]))
    styles = _styles(methods)
    for method, rows in unstructured.groupby(level="method", sort=False):
        sparsities = rows.index.get_level_values("sparsity")
        axes[0][0].errorbar([100 * s for s in sparsities], rows["mean"], yerr=rows["std"], capsize=3, label=method,
                            **styles[method])
    axes[0][0].set(xlabel="sparsity of the blocks' linear layers (%)", ylabel="test perplexity (per character, log scale)",
                   title="unstructured")
    if nm is not None:
        patterns = list(dict.fromkeys(nm.index.get_level_values("pattern")))
        for i, method in enumerate(dict.fromkeys(nm.index.get_level_values("method"))):
            rows = nm.xs(method, level="method").reindex(patterns)
            axes[0][1].errorbar(np.arange(len(patterns)) + 0.12 * (i - 1), rows["mean"], yerr=rows["std"], capsize=3,
                                linestyle="none", **styles[method])
        axes[0][1].set_xticks(range(len(patterns)), patterns)
        axes[0][1].set(xlabel="N:M pattern (n kept of every m)", title="N:M (50 % sparse)")
        axes[0][1].set_xlim(-0.6, len(patterns) - 0.4)
    for ax in axes[0]:
        if dense is not None:
            ax.axhspan(dense[0] - dense[1], dense[0] + dense[1], color="black", alpha=0.1)
            ax.axhline(dense[0], color="black", linewidth=1, label="dense (mean ± std)" if ax is axes[0][0] else None)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_error_bars(errors: pd.DataFrame, title: str = "Reconstruction error of each pruned layer") -> Figure:
    """Grouped bars of each layer's relative reconstruction error ``‖(W − Ŵ) X‖² / ‖W X‖²`` (log scale), one colour
    per method. ``errors`` has one row per layer (input to output) and one column per method."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    styles = _styles(list(errors.columns))
    width = 0.8 / len(errors.columns)
    for i, method in enumerate(errors.columns):
        ax.bar(np.arange(len(errors)) + width * (i - (len(errors.columns) - 1) / 2), errors[method], width,
               label=method, color=styles[method]["color"])
    ax.set_xticks(range(len(errors)), errors.index, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set(xlabel="layer (input to output)", ylabel="relative error (log scale)", title=title)
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    return fig
