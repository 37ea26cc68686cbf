"""Interactive explorers for the lecture (ipywidgets).

Widgets precompute everything expensive once, so that moving a slider only
redraws a small figure and answers well within a second.

The models may live on any device (CPU, CUDA, Apple's MPS): images are sent
to the model's device, and whatever a figure shows is brought back to the
CPU first (``.detach().cpu()``), because matplotlib and NumPy read only
CPU memory.
"""

from __future__ import annotations

import copy
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, clear_output, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image as PILImage
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import batches
from course_lib.costs import layer_costs, prunable_layers
from course_lib.masks import apply_masks
from course_lib.plots import method_style
from course_lib.pruning.selection import unit_masks
from course_lib.pruning.slimming import batchnorm_scales, slimming_keep
from course_lib.devices import model_device
from course_lib.sparse.tracking import MaskTrace
from course_lib.dpp.sampler import gumbel_noise, inclusion_probabilities, relaxed_top_k, top_k_mask
from course_lib.text import CharVocab, generate
from course_lib.training import NextToken, evaluate


def png_of(fig: Figure) -> Image:
    """Render ``fig`` to a PNG for display, as fast as a slider needs.

    Jupyter's inline backend crops figures with ``bbox_inches="tight"`` (two
    draws) and compresses PNGs hard; for a figure laid out once with
    ``tight_layout`` and redrawn on every slider move, one draw and light
    compression take about half the time.
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
    return Image(buffer.getvalue())


def _redraw_on_change(redraw: Callable[..., None], *controls: widgets.ValueWidget) -> None:
    """Call ``redraw`` whenever any of ``controls`` changes value, and once now."""
    for control in controls:
        control.observe(redraw, names="value")
    redraw()


def show_in(output: widgets.Output, fig: Figure) -> None:
    """Replace what ``output`` shows with ``fig`` (redrawn): what every slider does on a move."""
    with output:
        clear_output(wait=True)
        display(png_of(fig))


@torch.no_grad()
def class_probabilities(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000) -> torch.Tensor:
    """Softmax output of ``model`` (eval mode) for every image, shape (N, classes), on the CPU.

    The images go to the model's device batch by batch; the probabilities come back to the CPU.
    """
    device = model_device(model)
    model.eval()
    return torch.cat([torch.softmax(model(x.to(device)), dim=1).cpu() for x, _ in batches(dataset, batch_size)])


def misclassified_browser(model: nn.Module, dataset: TensorDataset, classes: Sequence[str]) -> widgets.VBox:
    """Browse the images ``model`` gets wrong, filtered by their true class.

    A drop-down picks the true class (or all), a slider walks through that
    class's mistakes; each shows the image and the model's three most likely
    classes. The caption names the test-set index, the truth and the guess.
    """
    images, labels = dataset.tensors
    probs = class_probabilities(model, dataset)
    preds = probs.argmax(dim=1)
    wrong = torch.nonzero(preds != labels).flatten()

    choose_class = widgets.Dropdown(options=[("all classes", -1)] + [(c, i) for i, c in enumerate(classes)],
                                    value=-1, description="true class")
    # Mistakes are counted from 1, on the slider as in the caption.
    slider = widgets.IntSlider(value=1, min=1, max=max(len(wrong), 1), description="mistake #",
                               continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("mistake-caption")
    figure = widgets.Output()

    def pool() -> torch.Tensor:
        c = choose_class.value
        return wrong if c < 0 else wrong[labels[wrong] == c]

    # The figure, made once; a move swaps the image, the bars and the labels (fast enough for a slider).
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.5, 2.4), dpi=80, gridspec_kw={"width_ratios": [1, 2]})
    shown = left.imshow(np.zeros((28, 28)), cmap="gray_r", vmin=float(images.min()), vmax=float(images.max()))
    left.set_xticks([])
    left.set_yticks([])
    bars = right.barh(range(3), [0, 0, 0], color="tab:red")
    right.invert_yaxis()
    right.set(xlim=(0, 100), xlabel="predicted probability (%)", title="the model's top 3 classes")
    right.set_yticks(range(3), [max(classes, key=len)] * 3)  # the longest name, so that the layout fits them all
    fig.tight_layout()
    plt.close(fig)  # shown through the Output widget only

    def redraw(*_: object) -> None:
        chosen = pool()
        if len(chosen) == 0:
            with figure:
                clear_output()
            caption.value = f"No mistakes on the class {classes[choose_class.value]}."
            return
        position = min(slider.value, len(chosen))
        i = int(chosen[position - 1])
        top = torch.topk(probs[i], 3)
        shown.set_data(images[i].squeeze().numpy())
        left.set_title(f"true: {classes[labels[i]]}", fontsize=8)
        for bar, p in zip(bars, 100 * top.values.numpy()):
            bar.set_width(p)
        right.set_yticks(range(3), [classes[k] for k in top.indices])
        show_in(figure, fig)
        # The caption last, so that a new caption always sits above its own figure.
        caption.value = (f"<b>mistake {position} of {len(chosen)}</b> &mdash; test image #{i}: "
                         f"true <b>{classes[labels[i]]}</b>, predicted <b>{classes[preds[i]]}</b> "
                         f"({100 * probs[i, preds[i]]:.0f} %)")

    def on_class(_: object) -> None:
        slider.max = max(len(pool()), 1)
        slider.value = 1
        redraw()

    choose_class.observe(on_class, names="value")
    _redraw_on_change(redraw, slider)
    return widgets.VBox([widgets.HBox([choose_class, slider]), caption, figure])


@torch.no_grad()
def masked_accuracy(model: nn.Module, masks: dict[str, torch.Tensor], dataset: TensorDataset,
                    batch_size: int = 5000) -> float:
    """Accuracy (%) of ``model`` with ``masks`` applied, without changing the model.

    ``torch.func.functional_call`` runs the model with substituted weights,
    so no copy and no mask machinery is needed: fast enough for a slider.
    The images and the masks go to the model's device.
    """
    device = model_device(model)
    params = dict(model.named_parameters())
    weights = {name: params[name] * mask.to(device) for name, mask in masks.items()}
    model.eval()
    correct = 0
    for x, y in batches(dataset, batch_size):
        outputs = torch.func.functional_call(model, weights, (x.to(device),))
        correct += int((outputs.argmax(1).cpu() == y).sum())
    return 100.0 * correct / len(dataset)


def sparsity_explorer(model: nn.Module, dataset: TensorDataset, units: int = 6,
                      curve_points: Sequence[float] = (0, .2, .4, .5, .6, .7, .8, .85, .9, .93, .95, .97, .98, .99),
                      ) -> widgets.VBox:
    """A sparsity slider that re-masks a trained network by magnitude and redraws what changed.

    Shows: accuracy on ``dataset`` (use the validation split) against sparsity,
    global and local; the |weight| histogram of every layer with its pruning
    threshold; and which input pixels the first layer's strongest ``units``
    neurons still see, side by side as 28x28 images.

    Built for speed (a move answers in well under 0.3 s on a laptop CPU): the
    figure and its artists are made once and only updated, histograms are
    counted once, accuracy uses :func:`masked_accuracy` (no model copies), and
    every (scope, sparsity) seen is remembered.
    """
    from course_lib.pruning.selection import unstructured_masks  # here to keep widgets importable on their own

    layers = {n: p.detach().cpu() for n, p in model.named_parameters() if n.endswith("weight")}  # for the figure
    first = next(iter(layers))
    strongest = layers[first].abs().sum(dim=1).topk(units).indices
    seen: dict[tuple[str, int], tuple[dict[str, torch.Tensor], float]] = {}

    def result(scope: str, percent: int) -> tuple[dict[str, torch.Tensor], float]:
        if (scope, percent) not in seen:
            masks = unstructured_masks(model, percent / 100, scope=scope)  # type: ignore[arg-type]
            on_cpu = {name: mask.detach().cpu() for name, mask in masks.items()}  # for the figure
            seen[(scope, percent)] = (on_cpu, masked_accuracy(model, masks, dataset))
        return seen[(scope, percent)]

    curves = {scope: [result(scope, round(100 * s))[1] for s in curve_points] for scope in ("global", "local")}

    # The figure, made once: accuracy curve, one histogram per layer, the first-layer masks.
    fig = plt.figure(figsize=(12, 4.4), dpi=80)  # a modest resolution keeps each redraw fast
    grid = fig.add_gridspec(2, len(layers) + 1, height_ratios=[3, 2])
    acc_ax = fig.add_subplot(grid[0, 0])
    for scope, accs in curves.items():
        acc_ax.plot([100 * p for p in curve_points], accs, label=scope, **{**method_style(scope), "marker": "."})
    (marker,) = acc_ax.plot([], [], "k*", markersize=12, label="now")
    acc_ax.set(xlabel="sparsity (%)", ylabel="accuracy (%)", title="validation accuracy, no retraining", ylim=(0, 100))
    acc_ax.legend(fontsize=7)
    thresholds = {}
    for i, (name, w) in enumerate(layers.items(), start=1):
        ax = fig.add_subplot(grid[0, i])
        counts, edges = np.histogram(w.abs().flatten().numpy(), bins=60)
        ax.stairs(counts, edges, fill=True, color="tab:gray")
        ax.set_yscale("symlog")
        thresholds[name] = ax.axvline(0, color="tab:red", label="threshold")
        ax.set(xlabel="|weight|", ylabel="weights (count)", title=name.removesuffix(".weight"))
        ax.legend(fontsize=7)
    mask_ax = fig.add_subplot(grid[1, :])
    mask_image = mask_ax.imshow(np.zeros((28, 28 * units)), cmap="gray_r", vmin=0, vmax=1)
    mask_ax.set_xticks([28 * j + 14 for j in range(units)], [f"unit {u}" for u in strongest.tolist()])
    mask_ax.set_yticks([])
    mask_ax.set_title(f"input pixels still connected to the {units} strongest first-layer neurons (black = kept)")
    fig.tight_layout()
    plt.close(fig)  # shown through the Output widget only

    slider = widgets.IntSlider(value=90, min=0, max=99, step=1, description="sparsity %", continuous_update=False)
    scope_buttons = widgets.ToggleButtons(options=["global", "local"], value="global", description="scope")
    caption = widgets.HTML()
    caption.add_class("sparsity-caption")
    figure = widgets.Output()

    def redraw(*_: object) -> None:
        masks, acc = result(scope_buttons.value, slider.value)
        marker.set_data([slider.value], [acc])
        for name, line in thresholds.items():
            kept = layers[name].abs()[masks[name].bool()]
            line.set_xdata([float(kept.min()) if slider.value > 0 and len(kept) else 0.0] * 2)
        rows = masks[first][strongest].reshape(units, 28, 28)
        mask_image.set_data(torch.cat(list(rows), dim=1).numpy())
        per_layer = ", ".join(f"{n.removesuffix('.weight')} {100 * (1 - float(m.mean())):.1f} %" for n, m in masks.items())
        show_in(figure, fig)
        caption.value = (f"<b>{scope_buttons.value} magnitude pruning to {slider.value} %</b>: "
                         f"accuracy {acc:.2f} % &mdash; sparsity per layer: {per_layer}")

    _redraw_on_change(redraw, slider, scope_buttons)
    return widgets.VBox([widgets.HBox([scope_buttons, slider]), caption, figure])


def keep_ratio_explorer(table: pd.DataFrame) -> widgets.VBox:
    """A channel-keep-ratio slider over precomputed structured-pruning results.

    ``table`` is the first result of :func:`course_lib.chapters.ch02_structure_and_speed.structured_sweep`
    (one row per keep ratio, 1.0 = dense). Each move shows accuracy, latency and
    MACs of the shrunk network next to the dense one; nothing is recomputed.
    """
    ratios = sorted(table.index, reverse=True)
    dense = table.loc[1.0]
    slider = widgets.SelectionSlider(options=[(f"{r:.3g}", r) for r in ratios], value=ratios[len(ratios) // 2],
                                     description="keep ratio", continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("keep-caption")
    figure = widgets.Output()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), dpi=80)
    panels = [("val_acc", "validation accuracy (%)"), ("latency_ms", "latency, batch 256 (ms)"),
              ("MACs", "MACs per image")]
    bars = []
    for ax, (column, label) in zip(axes, panels):
        bars.append(ax.bar(["dense", "pruned"], [dense[column], dense[column]], color=["tab:gray", "tab:blue"]))
        ax.set(ylabel=label, title=label.split(" (")[0], ylim=(0, 1.15 * table[column].max()))
        ax.set_xlabel("network")
    fig.suptitle("Structured pruning: what a smaller dense network buys")
    fig.tight_layout()
    plt.close(fig)

    def redraw(*_: object) -> None:
        row = table.loc[slider.value]
        for bar, (column, _) in zip(bars, panels):
            bar[1].set_height(row[column])
        show_in(figure, fig)
        caption.value = (f"<b>keep {slider.value:.3g} of the channels</b>: accuracy {row['val_acc']:.2f} % "
                         f"(dense {dense['val_acc']:.2f} %), {row['MAC_reduction']:.2f}x fewer MACs, "
                         f"{row['speedup']:.2f}x faster, {int(row['parameters']):,} parameters")

    _redraw_on_change(redraw, slider)
    return widgets.VBox([slider, caption, figure])


def ticket_viewer(tickets: Sequence, reinits: dict[int, nn.Module], dataset: TensorDataset, units: int = 6) -> widgets.VBox:
    """Pick an IMP round: the ticket's trained first-layer weights next to the random re-init's.

    ``tickets`` come from :func:`course_lib.pruning.lottery.iterative_magnitude_pruning`;
    ``reinits`` maps a round to its trained random re-init control. For the
    ``units`` first-layer neurons with most surviving weights, each 784-weight
    row is shown as a 28x28 image (red positive, blue negative, white pruned).
    """
    rounds = sorted(reinits)
    slider = widgets.SelectionSlider(options=[(str(r), r) for r in rounds], value=rounds[-1],
                                     description="IMP round", continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("ticket-caption")
    figure = widgets.Output()
    accuracy = {r: (evaluate(tickets[r].model, dataset), evaluate(reinits[r], dataset)) for r in rounds}

    def first_layer(model: nn.Module) -> torch.Tensor:
        return next(iter(prunable_layers(model).values())).weight.detach().cpu()  # to plot

    # The figure, made once; a move only swaps the images' data, colour scale and titles (fast enough for a slider).
    # Constrained layout makes room for the two-line titles and the colour bar at every redraw.
    labels = ["ticket", "random re-init"]
    fig, axes = plt.subplots(2, units, figsize=(1.6 * units, 4.0), dpi=80, layout="constrained")
    images = [[axes[row, j].imshow(np.zeros((28, 28)), cmap="bwr", vmin=-1, vmax=1) for j in range(units)]
              for row in range(2)]
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(images[0][0], ax=axes, shrink=0.8, label="trained weight (one scale for both rows)")
    plt.close(fig)  # shown through the Output widget only

    def redraw(*_: object) -> None:
        ticket = tickets[slider.value]
        mask = next(iter(ticket.masks.values())).detach().cpu()
        chosen = mask.sum(dim=1).topk(units).indices
        rows = [first_layer(model)[chosen] * mask[chosen] for model in (ticket.model, reinits[slider.value])]
        scale = max(float(weights.abs().max()) for weights in rows) or 1.0  # one scale: the rows' sizes compare
        for row, weights in enumerate(rows):
            for j in range(units):
                images[row][j].set_data(weights[j].reshape(28, 28).numpy())
                images[row][j].set_clim(-scale, scale)
                unit = f"unit {int(chosen[j])}"
                axes[row, j].set_title(f"{labels[row]}\n{unit}" if j == 0 else unit, fontsize=8)
        fig.suptitle(f"IMP round {slider.value}: trained first-layer weights of the same surviving connections "
                     "(red > 0, blue < 0)")
        ticket_acc, reinit_acc = accuracy[slider.value]
        show_in(figure, fig)
        caption.value = (f"<b>round {slider.value}</b>: {100 * ticket.density:.1f} % of weights remain &mdash; "
                         f"ticket {ticket_acc:.2f} %, random re-init {reinit_acc:.2f} % (validation)")

    _redraw_on_change(redraw, slider)
    return widgets.VBox([slider, caption, figure])


def slimming_explorer(model: nn.Module, dataset: TensorDataset, min_channels: int = 1,
                      max_images: int = 500) -> widgets.VBox:
    """A slider on network slimming's global ``|gamma|`` threshold, for a network trained with the L1 penalty.

    Each move removes every channel whose ``|gamma|`` is at most the threshold
    (keeping ``min_channels`` per layer), and redraws the channels kept per
    layer, the MACs and the validation accuracy of that network, without
    retraining. Each move masks a fresh copy of ``model`` (a tiny network:
    about a millisecond) and costs one pass over at most ``max_images`` images.
    """
    scales = batchnorm_scales(model)
    names = [n.removeprefix("net.") for n in scales]
    widths = [len(s) for s in scales.values()]
    probe = TensorDataset(*(t[:max_images] for t in dataset.tensors))
    costs = layer_costs(model).set_index("layer")
    dense_macs = int(costs.macs.sum())
    everything = torch.cat(list(scales.values()))
    # A log scale: after sparsity training most scales sit within a hair of zero, the rest near 1.
    top = math.log10(float(everything.max()))
    slider = widgets.FloatLogSlider(value=max(float(everything.median()), 10 ** (top - 5)), base=10, min=top - 5,
                                    max=top, step=0.02, readout_format=".2e", description="|γ| threshold",
                                    continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("slimming-caption")
    figure = widgets.Output()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3), dpi=80)
    left.bar(names, widths, color="lightgray", label="dense")
    kept_bars = left.bar(names, widths, color="tab:blue", label="kept")
    left.set(title="Channels kept per layer", xlabel="layer", ylabel="channels")
    left.legend()
    right.hist(everything.clamp(min=10 ** (top - 5)).numpy(), bins=np.logspace(top - 5, top, 41), color="tab:gray")
    right.set_xscale("log")
    line = right.axvline(slider.value, color="tab:red")
    right.set(title="|γ| of all channels; red: the threshold", xlabel="|γ| (BatchNorm scale, log)", ylabel="channels")
    fig.tight_layout()
    plt.close(fig)

    def redraw(*_: object) -> None:
        keep = slimming_keep(scales, slider.value, min_channels)
        masked = copy.deepcopy(model).eval()  # masks zero the weights they prune: start from the trained ones each time
        apply_masks(masked, unit_masks(model, keep))
        for bar, k in zip(kept_bars, keep.values()):
            bar.set_height(int(k.sum()))
        line.set_xdata([slider.value, slider.value])
        macs = _macs_after_removing_channels(costs, keep)
        show_in(figure, fig)
        caption.value = (f"<b>threshold {slider.value:.2e}</b>: {sum(int(k.sum()) for k in keep.values())} of "
                         f"{sum(widths)} channels, {macs / dense_macs:.0%} of the MACs, validation accuracy "
                         f"{evaluate(masked, probe):.1f} % on {len(probe)} images, without retraining")

    _redraw_on_change(redraw, slider)
    return widgets.VBox([slider, caption, figure])


def sparse_training_explorer(traces: dict[str, MaskTrace], steps_per_epoch: int,
                             image_shape: tuple[int, int] = (28, 28)) -> widgets.VBox:
    """A method toggle and a training-time slider over mask snapshots recorded during training.

    Each move redraws the first layer's in-degree image (the active connections
    from each input pixel into the layer, on a colour scale of its own per
    method: a dense start would flatten a sparse one) and each layer's density
    and ever-active share at that snapshot. Everything was recorded by
    :class:`~course_lib.sparse.tracking.MaskTracker`; a move only redraws.
    """
    if not traces:
        raise ValueError("sparse_training_explorer needs at least one MaskTrace, e.g. {'RigL': trace}.")
    snapshots = min(len(t.steps) for t in traces.values())
    method = widgets.ToggleButtons(options=list(traces), description="method")
    when = widgets.IntSlider(value=0, min=0, max=snapshots - 1, description="snapshot", continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("sparse-caption")
    figure = widgets.Output()
    first = next(iter(traces.values()))
    names = [n.removeprefix("net.") for n in first.layers]
    tops = {name: max(float(image.max()) for image in t.in_degree) for name, t in traces.items()}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=80, gridspec_kw={"width_ratios": [1, 1.6]})
    image = left.imshow(np.zeros(image_shape), cmap="viridis", vmin=0, vmax=1)
    left.set(title="first layer: connections per input pixel", xticks=[], yticks=[])
    fig.colorbar(image, ax=left, label="connections")
    x = np.arange(len(names))
    now_bars = right.bar(x - 0.2, np.zeros(len(names)), 0.4, color="tab:blue", label="active now")
    ever_bars = right.bar(x + 0.2, np.zeros(len(names)), 0.4, color="tab:orange", label="ever active")
    right.set_xticks(x, names)
    right.set(ylim=(0, 100), xlabel="layer", ylabel="% of the layer's weights", title="per-layer density")
    right.legend(loc="upper left", fontsize=8)
    fig.suptitle(" ", fontsize=10)  # room for the method and step each redraw writes (what a static copy shows)
    fig.tight_layout()
    plt.close(fig)

    def redraw(*_: object) -> None:
        trace, i = traces[method.value], when.value
        image.set_data(trace.in_degree[i].float().reshape(image_shape).numpy())
        image.set_clim(0, tops[method.value])
        for layer, now, ever in zip(trace.layers, now_bars, ever_bars):
            now.set_height(100 * trace.densities[i][layer])
            ever.set_height(100 * trace.ever_active[i][layer])
        step = trace.steps[i]
        fig.suptitle(f"Sparse training masks: {method.value}, step {step} (epoch {step / steps_per_epoch:.2f})", fontsize=10)
        show_in(figure, fig)
        caption.value = (f"<b>{method.value}</b>, step {step} (epoch {step / steps_per_epoch:.2f}): "
                         f"{100 * trace.density_total[i]:.1f} % of the weights active, "
                         f"{100 * trace.ever_active_total[i]:.1f} % active at some step so far")

    _redraw_on_change(redraw, method, when)
    return widgets.VBox([method, when, caption, figure])


def gumbel_top_k_explorer(logits: torch.Tensor, draws: int = 2000, seed: int = 0) -> widgets.VBox:
    """Sliders for k and the temperature over a short row of logits (chapter 7's sampler).

    Left: how often each entry is kept in ``draws`` Gumbel-top-k samples,
    beside the exact Plackett-Luce probabilities. Right: one draw - the hard
    k-hot mask and its relaxation at the chosen temperature (the soft mask
    whose gradient training uses). The temperature changes only the soft mask:
    the hard sample does not depend on it.
    """
    if logits.dim() != 1 or not 2 <= logits.numel() <= 10:
        raise ValueError(f"gumbel_top_k_explorer takes one row of 2 to 10 logits, got shape {tuple(logits.shape)}.")
    n = logits.numel()
    k_slider = widgets.IntSlider(value=min(2, n - 1), min=1, max=n - 1, description="k", continuous_update=False)
    tau = widgets.FloatLogSlider(value=1.0, base=10, min=-2, max=1, step=0.05, description="temperature τ",
                                 continuous_update=False)
    caption = widgets.HTML()
    caption.add_class("sampler-caption")
    figure = widgets.Output()
    noise = gumbel_noise((draws, n), torch.Generator().manual_seed(seed))  # fixed: a move changes k or τ only
    x = np.arange(n)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2), dpi=80)
    exact_bars = left.bar(x - 0.2, np.zeros(n), 0.4, color="tab:gray", label="exact probability")
    seen_bars = left.bar(x + 0.2, np.zeros(n), 0.4, color="tab:blue", label=f"frequency in {draws} draws")
    left.set(ylim=(0, 1), xticks=x, xlabel="entry i", ylabel="P(i kept)", title="Gumbel-top-k: which entries are kept")
    left.legend(fontsize=8, loc="upper left")
    hard_bars = right.bar(x - 0.2, np.zeros(n), 0.4, color="tab:blue", label="hard sample (forward)")
    soft_bars = right.bar(x + 0.2, np.zeros(n), 0.4, color="tab:orange", label="relaxation (backward)")
    right.set(ylim=(0, 1.05), xticks=x, xlabel="entry i", ylabel="mask value", title="one draw")
    right.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plt.close(fig)

    def redraw(*_: object) -> None:
        k = k_slider.value
        exact = inclusion_probabilities(logits, k)
        seen = top_k_mask(logits + noise, k).mean(0)
        hard, soft = top_k_mask(logits + noise[0], k), relaxed_top_k(logits + noise[0], k, tau.value)
        for bars, values in ((exact_bars, exact), (seen_bars, seen), (hard_bars, hard), (soft_bars, soft)):
            for bar, value in zip(bars, values.tolist()):
                bar.set_height(value)
        right.set_ylim(0, max(1.05, 1.1 * float(soft.max())))  # a relaxed entry can exceed 1: never clip it
        show_in(figure, fig)
        caption.value = (f"<b>k = {k}, τ = {tau.value:.2f}</b>: largest gap between frequency and probability "
                         f"{float((seen - exact).abs().max()):.3f}; the soft mask sums to {float(soft.sum()):.2f} "
                         f"and is {float((soft - hard).abs().sum()):.2f} away from the hard one")

    _redraw_on_change(redraw, k_slider, tau)
    return widgets.VBox([widgets.HBox([k_slider, tau]), caption, figure])


def _macs_after_removing_channels(costs: pd.DataFrame, keep: dict[str, torch.Tensor]) -> int:
    """MACs per image once the channels ``keep`` says False are gone: a layer's MACs scale with the share of
    its outputs kept and the share of its inputs (the previous layer's outputs) kept.

    ``costs`` is :func:`course_lib.costs.layer_costs` of the dense network, indexed by layer, in forward order.
    """
    total, input_share = 0.0, 1.0
    for layer, dense_macs in costs.macs.items():
        output_share = float(keep[layer].float().mean()) if layer in keep else 1.0
        total += dense_macs * output_share * input_share
        input_share = output_share
    return round(total)


def one_shot_explorer(pruned: Mapping[tuple[str, str], nn.Module], vocab: CharVocab, windows: TensorDataset,
                      prompt: str = "The best way to ", length: int = 120, seed: int = 0) -> widgets.VBox:
    """A prompt box, a method toggle and a sparsity slider over one-shot-pruned language models (chapter 9).

    ``pruned`` maps (method, setting) to a pruned model, for every method and every setting (``"0 %"``, ``"50 %"``,
    ``"2:4"``, ...; settings in slider order). Each model's test perplexity on ``windows`` is computed once, here;
    a move then draws the method's perplexity curve with the chosen setting circled, and continues the prompt with
    the chosen model, seeded (the same prompt, model and seed give the same text: a change in the text is the
    pruning's doing, not the dice's). The continuations of the first prompt are written here too, and every other
    one is kept once written, so that a move answers at once.
    """
    if not pruned:
        raise ValueError("one_shot_explorer needs at least one pruned model, keyed by (method, setting).")
    methods = list(dict.fromkeys(method for method, _ in pruned))
    settings = list(dict.fromkeys(setting for _, setting in pruned))
    missing = [(m, s) for m in methods for s in settings if (m, s) not in pruned]
    if missing:
        raise ValueError(f"give a model for every method and setting; missing: {missing}.")
    scores = {key: math.exp(NextToken().score(model, windows)) for key, model in pruned.items()}
    written: dict[tuple[str, str, str], str] = {}

    def continuation_of(prompt_text: str, key: tuple[str, str]) -> str:
        if (prompt_text, *key) not in written:
            try:
                written[(prompt_text, *key)] = generate(pruned[key], vocab, prompt_text, length, seed=seed)
            except ValueError as error:  # an empty prompt, or a character the model never saw
                return f" [{error}]"
        return written[(prompt_text, *key)]

    for key in pruned:
        continuation_of(prompt, key)
    text = widgets.Text(value=prompt, description="prompt", continuous_update=False,
                        layout=widgets.Layout(width="60%"))
    method = widgets.ToggleButtons(options=methods, description="method")
    setting = widgets.SelectionSlider(options=settings, value=settings[0], description="sparsity",
                                      continuous_update=False)
    caption, continuation, figure = widgets.HTML(), widgets.HTML(), widgets.Output()
    caption.add_class("one-shot-caption")
    fig, ax = plt.subplots(figsize=(6.5, 3), dpi=80)
    x = np.arange(len(settings))
    lines = {m: ax.plot(x, [scores[(m, s)] for s in settings], label=m, **(method_style(m) or {}))[0] for m in methods}
    circle, = ax.plot([], [], "o", markersize=16, markerfacecolor="none", markeredgecolor="black")
    ax.set_xticks(x, settings)
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):  # 9.8, 10, 11: not 1.1 × 10¹
        axis(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set(xlabel="sparsity of the blocks' linear layers", ylabel="test perplexity (log scale)",
           title="perplexity of each pruned model")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plt.close(fig)

    def redraw(*_: object) -> None:
        key = (method.value, setting.value)
        for name, line in lines.items():
            line.set_alpha(1.0 if name == method.value else 0.3)
        circle.set_data([settings.index(setting.value)], [scores[key]])
        show_in(figure, fig)
        words = continuation_of(text.value, key)
        caption.value = (f"<b>{method.value} at {setting.value}</b>: test perplexity {scores[key]:.2f} "
                         f"(the unpruned model: {scores[(method.value, settings[0])]:.2f})")
        continuation.value = (f"<pre style='white-space: pre-wrap'>{html.escape(text.value)}"
                              f"<b>{html.escape(words)}</b></pre>")

    _redraw_on_change(redraw, text, method, setting)
    return widgets.VBox([text, method, setting, caption, continuation, figure])
