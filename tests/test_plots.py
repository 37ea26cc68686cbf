"""Plots that take any method names: every method gets a colour, however many there are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from course_lib import plots  # noqa: E402


def test_method_dots_colour_methods_without_a_colour_of_their_own():
    methods = [f"method {i}" for i in range(12)] + ["SET", "RigL"]  # more unknown names than any palette slice
    index = pd.MultiIndex.from_product([["a", "b"], methods], names=["group", "method"])
    summary = pd.DataFrame({"mean": 80.0, "std": 1.0, "seeds": 3}, index=index)
    fig = plots.method_dots(summary, {"SET": 69.6}, title="test")
    colours = {c.lines[0].get_color() for c in fig.axes[0].containers}
    assert len(colours) >= 8  # no StopIteration, and the unknown methods are told apart


def test_methods_vs_sparsity_draws_one_line_per_method():
    index = pd.MultiIndex.from_product([["DPP", "row", "global"], [0.8, 0.9]], names=["method", "sparsity"])
    summary = pd.DataFrame({"mean": 85.0, "std": 0.2, "seeds": 3}, index=index)
    fig = plots.methods_vs_sparsity(summary, dense=(86.0, 0.1), title="test")
    assert len(fig.axes[0].get_legend().get_texts()) == 4  # three methods and the dense band


def test_methods_vs_sparsity_names_the_layer_density_when_a_method_has_several():
    index = pd.MultiIndex.from_tuples([("RigL", "erk", 0.9), ("RigL", "erk", 0.95), ("RigL", "uniform", 0.9),
                                       ("RigL", "uniform", 0.95), ("small-dense", "dense", 0.9)],
                                      names=["method", "distribution", "sparsity"])
    summary = pd.DataFrame({"mean": 85.0, "std": 0.2, "seeds": 2}, index=index)
    fig = plots.methods_vs_sparsity(summary, title="test")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["RigL (ERK)", "RigL (uniform)", "small-dense"]
    styles = {c.get_label(): c.lines[0].get_linestyle() for c in fig.axes[0].containers}
    assert styles == {"RigL (ERK)": "-", "RigL (uniform)": "--", "small-dense": "-"}


# The methods each chapter draws in one figure: no two of them may share a colour.
DRAWN_TOGETHER = {
    "chapter 1, fine-tuned": ["global + fine-tune", "local + fine-tune", "local, fc3 at half rate + fine-tune",
                              "random, local's sizes + fine-tune", "random, global's sizes + fine-tune"],
    "chapter 3": ["ticket", "random re-init", "random mask"],
    "chapter 4": ["magnitude", "snip", "grasp", "synflow", "random", "lottery ticket (chapter 3)"],
    "chapter 5": ["dense", "fine-tuned", "fine-tuned, as long as Scratch-B", "Scratch-E", "Scratch-B",
                  "uniform Scratch-B", "dense, as long as Scratch-B", "fine-tuned from the long dense",
                  "LR-rewound, as long as Scratch-B"],
    "chapter 5, unstructured": ["dense", "fine-tuned", "fine-tuned, gradual", "Scratch-E", "Scratch-B",
                                "Scratch-E, dense-scale init", "LR-rewound, as long as Scratch-B"],
    "chapter 6": ["small-dense", "AGP", "static", "SET", "RigL"],
    "chapter 7, LeNet": ["global", "local", "row", "DPP", "random k per neuron"],
    "chapter 7, SmallVGG": ["dense", "DPP (feature-map)", "DPP (kernel)", "L1 filters", "half-width"],
    "chapter 7, 2:4": ["ASP 2:4", "DPP 2:4", "unstructured (global)"],
}


def test_every_method_of_the_course_has_its_own_look():
    from course_lib import methods

    for name in methods.METHODS:
        assert plots.method_style(name) is not None, f"{name} has no style in plots.METHOD_STYLES"
    looks = {}
    for name, look in plots.METHOD_STYLES.items():
        looks.setdefault(look, []).append(name)
    shared = [names for names in looks.values() if len(names) > 1]
    aliases = [{"magnitude + fine-tune", "global", "fine-tuned", "unstructured (global)", "one-shot"},
               {"ticket", "lottery ticket"}, {"AGP", "fine-tuned, gradual", "gradual"}, {"iterative magnitude", "iterative"},
               {"random re-init", "Scratch-E, dense-scale init"},
               {"random mask", "random", "random k per neuron", "random row"},
               {"DPP", "feature-map DPP", "DPP (feature-map)", "DPP 2:4"}]
    assert all(set(names) in aliases for names in shared), f"different methods look alike: {shared}"


def test_the_methods_of_one_figure_have_different_colours():
    from course_lib import methods

    families = {f"capstone, {family}": [m.name for m in methods.METHODS.values() if m.family == family]
                for family in ("unstructured", "structured")}
    for figure, names in {**DRAWN_TOGETHER, **families}.items():
        colours = [plots.method_style(n)["color"] for n in names]
        assert len(set(colours)) == len(names), f"{figure}: {dict(zip(names, colours))}"


def test_a_label_takes_the_style_of_the_longest_name_it_starts_with():
    assert plots.method_style("local, fc3 at half rate + fine-tune") == plots.method_style("local, fc3 at half rate")
    assert plots.method_style("local + fine-tune") == plots.method_style("local")
    assert plots.method_style("SNIP") == plots.method_style("snip")
    assert plots.method_style("an unknown method") is None


def test_the_pareto_front_keeps_what_nothing_beats_on_both_axes():
    cost = pd.Series({"cheap": 0.1, "cheap but worse": 0.1001, "dominated": 0.5, "best": 1.0, "costly": 2.0})
    accuracy = pd.Series({"cheap": 80.0, "cheap but worse": 79.0, "dominated": 79.5, "best": 85.0, "costly": 85.0})
    assert plots.pareto_front(cost, accuracy) == ["cheap", "best"]


def test_ranked_dots_and_the_cost_plot_draw_every_method_at_every_sparsity():
    index = pd.MultiIndex.from_product([["SET", "RigL", "AGP"], [0.9, 0.98]], names=["method", "sparsity"])
    summary = pd.DataFrame({"mean": [85, 80, 86, 79, 87, 70], "std": 0.3, "seeds": 2}, index=index)
    fig = plots.ranked_dots(summary, dense=(88.0, 0.2))
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["AGP", "RigL", "SET"]  # from the bottom
    points = summary.rename(columns={"mean": "test_acc"}).assign(train_flops=[0.1, 0.05, 0.2, 0.1, 0.6, 0.5])
    fig = plots.accuracy_vs_cost(points)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4  # three methods and the front


def test_accuracy_vs_length_puts_each_method_at_its_epochs():
    index = pd.MultiIndex.from_product([["SET", "RigL"], [1, 3]], names=["method", "length"])
    summary = pd.DataFrame({"mean": [85, 86, 84, 86.5], "std": 0.2, "seeds": 2}, index=index)
    fig = plots.accuracy_vs_length(summary, baseline_epochs=4)
    assert [list(c.lines[0].get_xdata()) for c in fig.axes[0].containers] == [[4, 12], [4, 12]]


def test_setting_sweep_draws_the_mean_of_each_setting():
    runs = pd.DataFrame({"rate": [0.01, 0.01, 0.3, 0.3], "acc": [80.0, 82.0, 84.0, 84.0], "share": 0.5})
    fig = plots.setting_sweep(runs, "rate", {"acc": "test accuracy (%)", "share": "share of training"})
    assert list(fig.axes[0].containers[0].lines[0].get_ydata()) == [81.0, 84.0] and len(fig.axes) == 2


def test_cost_dots_print_each_cost_as_a_ratio_to_the_cheapest():
    costs = {"a": {"MACs": 100.0, "ms": 2.0}, "b": {"MACs": 190.0, "ms": 1.0}}
    fig = plots.cost_dots(costs, {"MACs": ("MACs per image", "multiply-accumulates"), "ms": ("latency", "ms")})
    labels = [[text.get_text() for text in ax.texts] for ax in fig.axes]
    assert labels == [["100 (1.0x)", "190 (1.9x)"], ["2 (2.0x)", "1 (1.0x)"]]


def test_an_emptied_layer_sits_on_a_labelled_floor_not_at_an_invented_value():
    fig = plots.layer_densities({"magnitude": {"fc1": 0.0, "fc2": 2.0}, "snip": {"fc1": 0.5, "fc2": 3.0}})
    ax = fig.axes[0]
    assert ax.lines[0].get_ydata()[0] == 0.05  # a decade below the smallest share kept anywhere (0.5 %)
    assert any("emptied" in text.get_text() for text in ax.texts)


def test_validation_curves_circle_each_runs_best_check():
    from course_lib.training import History

    run = History(eval_steps=[100, 200, 300], eval_accuracy=[80.0, 84.0, 83.5])
    fig = plots.validation_curves({"ticket, 100 %": run})
    circle = fig.axes[0].lines[1]
    assert (list(circle.get_xdata()), list(circle.get_ydata())) == ([200], [84.0])


def test_per_class_accuracy_can_rank_the_classes_best_first():
    import matplotlib.pyplot as plt
    import torch

    predictions = torch.tensor([0, 0, 1, 0, 2, 2])
    labels = torch.tensor([0, 1, 1, 2, 2, 2])  # accuracy: class a 100 %, b 50 %, c 67 %
    fig = plots.per_class_accuracy(predictions, labels, ["a", "b", "c"], ranked=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "c", "b"]  # drawn top to bottom, best first
    assert [round(bar.get_width()) for bar in ax.patches] == [100, 67, 50]
    plt.close(fig)


def test_the_sensitivity_scan_draws_layers_in_colours_no_method_uses():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    scan = pd.DataFrame({"layer": ["fc1", "fc1", "fc2", "fc2", "fc3", "fc3"], "sparsity": [0.0, 0.5] * 3,
                         "accuracy": [90.0, 89.0, 90.0, 88.0, 90.0, 80.0]})
    fig = plots.sensitivity(scan, 90.0)
    drawn = {to_hex(line.get_color()) for line in fig.axes[0].lines if line.get_label().startswith("fc")}
    assert len(drawn) == 3 and not drawn & {to_hex(colour) for colour, _ in plots.METHOD_STYLES.values()}
    plt.close(fig)
