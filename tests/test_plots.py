"""Plots that take any method names: every method gets a colour, however many there are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from course_lib import plots  # noqa: E402


def test_method_bars_colour_methods_without_a_colour_of_their_own():
    methods = [f"method {i}" for i in range(12)] + ["SET", "RigL"]  # more unknown names than any palette slice
    index = pd.MultiIndex.from_product([["a", "b"], methods], names=["group", "method"])
    summary = pd.DataFrame({"mean": 80.0, "std": 1.0, "seeds": 3}, index=index)
    fig = plots.method_bars(summary, {"SET": 69.6}, title="test")
    colours = {patch.get_facecolor() for patch in fig.axes[0].patches}
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
