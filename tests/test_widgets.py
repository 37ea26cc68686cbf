"""Widgets build, and answer a slider move by changing what they show (the browser test does it for real)."""

import matplotlib
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from course_lib import widgets  # noqa: E402
from course_lib.masks import is_masked  # noqa: E402
from course_lib.models import build_model  # noqa: E402
from course_lib.pruning.selection import unstructured_masks  # noqa: E402
from course_lib.training import evaluate  # noqa: E402
from course_lib.pruning.procedures import one_shot, magnitude  # noqa: E402
from tests.test_training import _subset  # noqa: E402


@pytest.fixture
def small(quick_splits):
    return _subset(quick_splits, n=500)


def test_masked_accuracy_equals_evaluating_a_masked_copy(small):
    model = build_model("lenet300")
    masks = unstructured_masks(model, 0.7)
    expected = evaluate(one_shot(model, 0.7, magnitude()).model, small.val)
    assert widgets.masked_accuracy(model, masks, small.val) == pytest.approx(expected)


def test_sparsity_explorer_redraws_on_a_move(small):
    box = widgets.sparsity_explorer(build_model("lenet300"), small.val, curve_points=(0, 0.5, 0.9))
    scope, slider = box.children[0].children
    caption = box.children[1]
    before = caption.value
    slider.value = 50
    assert "50 %" in caption.value and caption.value != before
    scope.value = "local"
    assert "local" in caption.value and "net.fc3 50.0 %" in caption.value


def test_misclassified_browser_walks_the_mistakes(small):
    box = widgets.misclassified_browser(build_model("lenet5"), small.test, small.classes)
    choose, slider = box.children[0].children
    assert slider.value == slider.min == 1 and "mistake 1 of" in box.children[1].value
    slider.value = 3
    assert "mistake 3 of" in box.children[1].value  # the slider and the caption count alike
    assert f"of {slider.max}" in box.children[1].value  # the last position is the last mistake
    choose.value = 3
    assert slider.value == 1 and ("true <b>Dress</b>" in box.children[1].value or "No mistakes" in box.children[1].value)


def test_keep_ratio_explorer_reads_the_table():
    table = pd.DataFrame({"parameters": [100, 40], "MACs": [1000, 300], "val_acc": [90.0, 85.0],
                          "latency_ms": [2.0, 1.0], "speedup": [1.0, 2.0], "MAC_reduction": [1.0, 3.33]},
                         index=pd.Index([1.0, 0.5], name="keep_ratio"))
    box = widgets.keep_ratio_explorer(table)
    slider, caption = box.children[0], box.children[1]
    slider.value = 0.5
    assert "2.00x faster" in caption.value and "85.00 %" in caption.value


def test_ticket_viewer_switches_rounds(small):
    from course_lib.pruning import lottery
    from course_lib.training import TrainConfig
    config = TrainConfig(epochs=1, schedule="step")
    tickets, _ = lottery.iterative_magnitude_pruning("lenet300", small, config, rounds=2, progress=False)
    reinits = {r: lottery.random_reinit_control("lenet300", tickets[r], small, config, progress=False)[0] for r in (1, 2)}
    box = widgets.ticket_viewer(tickets, reinits, small.val)
    slider, caption = box.children[0], box.children[1]
    assert "round 2" in caption.value and "64.1 % of weights" in caption.value
    slider.value = 1
    assert "round 1" in caption.value and "80.0 % of weights" in caption.value


def test_slimming_explorer_removes_more_channels_as_the_threshold_rises(small):
    model = build_model("vgg")
    with torch.no_grad():
        for i, bn in enumerate([model.net.bn1, model.net.bn2, model.net.bn3]):
            bn.weight.copy_(torch.linspace(0.01, 1.0, bn.num_features))
    box = widgets.slimming_explorer(model, small.val, min_channels=2)
    slider, caption = box.children[0], box.children[1]
    slider.value = 10 ** slider.min  # a log slider: min and max are exponents
    assert "56 of 56 channels, 100% of the MACs" in caption.value, caption.value
    slider.value = 0.5
    kept = int(caption.value.split("</b>: ")[1].split(" of")[0])
    assert 20 < kept < 35 and "without retraining" in caption.value
    slider.value = 10 ** slider.max
    assert caption.value.split("</b>: ")[1].startswith("6 of 56"), "the floor keeps 2 channels in each of 3 layers"
    assert not is_masked(model), "the widget masks a copy, never the model it is given"


def test_the_explorers_mac_count_is_the_shrunk_networks():
    from course_lib.costs import layer_costs
    from course_lib.masks import apply_masks
    from course_lib.pruning import slimming
    from course_lib.pruning.selection import unit_masks
    from course_lib.pruning.surgery import shrink

    model = build_model("vgg", seed=4)
    scales = slimming.batchnorm_scales(model)
    for threshold in (0.0, 0.3, 0.9):
        g = torch.Generator().manual_seed(int(threshold * 10))
        keep = {layer: torch.rand(len(s), generator=g) > threshold for layer, s in scales.items()}
        keep = {layer: k if k.any() else torch.ones_like(k) for layer, k in keep.items()}
        masked = build_model("vgg", seed=4)
        apply_masks(masked, unit_masks(masked, keep))
        expected = int(layer_costs(shrink(masked)).macs.sum())
        assert widgets._macs_after_removing_channels(layer_costs(model).set_index("layer"), keep) == expected


def test_sparse_training_explorer_follows_time_and_method(small):
    from course_lib.sparse.tracking import MaskTracker
    from course_lib.sparse.updaters import SET, Static
    from course_lib.training import TrainConfig, train

    traces = {}
    for name, trainer in (("static", Static), ("SET", SET)):
        tracker = MaskTracker(snapshot_every=2)
        train(build_model("lenet300"), small, TrainConfig(epochs=2, batch_size=100),
              hooks=[trainer(0.9, "erk", update_every=2), tracker], progress=False, device=torch.device("cpu"))
        traces[name] = tracker.trace
    box = widgets.sparse_training_explorer(traces, steps_per_epoch=5)
    method, slider, caption = box.children[:3]
    assert "step 0 " in caption.value and "10.0 % of the weights active" in caption.value
    slider.value = slider.max
    assert "step 10 " in caption.value and "static" in caption.value
    static_end = caption.value
    method.value = "SET"
    assert "SET" in caption.value and caption.value.split("so far")[0] != static_end.split("so far")[0]
    with pytest.raises(ValueError, match="at least one"):
        widgets.sparse_training_explorer({}, steps_per_epoch=5)


def test_gumbel_top_k_explorer_answers_k_and_temperature():
    box = widgets.gumbel_top_k_explorer(torch.tensor([2.0, 1.0, 0.3, 0.0, -0.5, 0.8]))
    (k, tau), caption = box.children[0].children, box.children[1]
    assert "k = 2" in caption.value and "sums to 2.00" in caption.value
    k.value = 3
    assert "k = 3" in caption.value and "sums to 3.00" in caption.value

    def distance():
        return float(caption.value.split("is ")[-1].split(" away")[0])

    tau.value = 10.0
    hot = distance()
    tau.value = 0.01
    assert distance() < hot / 2, "a cold relaxation comes close to the hard mask"
    with pytest.raises(ValueError, match="one row"):
        widgets.gumbel_top_k_explorer(torch.zeros(2, 3))
