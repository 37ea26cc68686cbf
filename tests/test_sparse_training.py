"""Chapter 6's library: training FLOPs, the mask tracker, drop-and-grow, fan-in initialisation, small-dense."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.costs import count_parameters, layer_costs
from course_lib.masks import apply_masks, get_masks, mask_layers, scale_to_kept_fan_in
from course_lib.models import build_model, lenet300_of_size
from course_lib.sparse.flops import forward_flops, training_step_flops
from course_lib.sparse.tracking import MaskTracker
from course_lib.sparse.updaters import RigL, SET, Static, drop_and_grow
from course_lib.training import TrainConfig, TrainContext, train
from tests.test_updaters import _toy_data

CPU = torch.device("cpu")


def test_flops_by_hand_on_two_linear_layers():
    macs = {"a": 100 * 50, "b": 50 * 10}  # Linear(100, 50) and Linear(50, 10): one MAC per weight per image
    assert forward_flops(macs) == 2 * (5000 + 500)
    assert forward_flops(macs, {"a": 0.1}) == 2 * (500 + 500)  # b not named: dense
    assert training_step_flops(macs, {"a": 0.1, "b": 0.5}) == 3 * 2 * (500 + 250)
    # RigL's update step: forward and input gradients sparse, the weight gradient dense.
    assert training_step_flops(macs, {"a": 0.1, "b": 0.5}, dense_weight_gradient=True) == \
        2 * 2 * (500 + 250) + 2 * (5000 + 500)
    with pytest.raises(ValueError, match="density"):
        forward_flops(macs, {"a": 1.5})


def test_flops_of_a_convolution_count_every_output_position():
    model = nn.Sequential(nn.Conv2d(1, 4, 3))  # 26 x 26 outputs, 9 MACs each, 4 channels
    macs = layer_costs(model, input_shape=(1, 28, 28)).set_index("layer").macs.to_dict()
    assert forward_flops(macs) == 2 * 4 * 9 * 26 * 26


def _tracked(updater, epochs=2, batch_size=32, n=256):
    model = build_model("lenet300")
    tracker = MaskTracker(snapshot_every=3)
    config = TrainConfig(epochs=epochs, batch_size=batch_size)
    train(model, _toy_data(n=n), config, hooks=[updater, tracker] if updater else [tracker], progress=False, device=CPU)
    return model, tracker.trace, config


def test_tracker_counts_static_and_dense_training_flops_exactly():
    _, dense, config = _tracked(None)
    macs = layer_costs(build_model("lenet300")).macs.sum()
    assert dense.images == 2 * 256
    assert dense.training_flops == pytest.approx(dense.images * 3 * 2 * macs)
    assert dense.ever_active_total == [1.0] * len(dense.steps)
    static_model, static, _ = _tracked(Static(0.9, "erk"))
    sparse_forward = forward_flops(layer_costs(static_model).set_index("layer").macs.to_dict(), static.densities[-1])
    assert static.training_flops == pytest.approx(static.images * 3 * sparse_forward)
    assert static.training_flops / dense.training_flops == pytest.approx(0.1, abs=0.002)


def test_tracker_sees_rigls_dense_gradient_steps_and_exploration():
    rigl = RigL(0.9, "erk", update_every=4)
    _, trace, _ = _tracked(rigl)
    assert trace.dense_weight_gradient_steps == len(rigl.history) > 0
    _, static, _ = _tracked(Static(0.9, "erk"))
    extra = trace.training_flops - static.training_flops
    assert extra > 0  # a dense weight gradient on every update step, nothing else differs
    assert static.ever_active_total[0] == static.ever_active_total[-1] == pytest.approx(0.1, abs=0.002)
    assert trace.ever_active_total == sorted(trace.ever_active_total) and trace.ever_active_total[-1] > 0.11
    assert trace.steps[0] == 0 and trace.steps[-1] == 16 and len(trace.in_degree[0]) == 784
    # In-degree: active connections leaving each pixel; they add up to the first layer's active weights.
    first = trace.layers[0]
    assert int(trace.in_degree[-1].sum()) == round(trace.densities[-1][first] * trace.weights[first])


def test_drop_and_grow_by_hand():
    active = torch.tensor([True, True, True, False, False, False])
    weight = torch.tensor([0.5, -0.1, 2.0, 0.0, 0.0, 0.0])
    grad = torch.tensor([0.0, 0.0, 0.0, 0.3, -0.9, 0.1])
    new_mask, new = drop_and_grow(active, weight.abs(), grad.abs(), k=1)
    assert new_mask.tolist() == [True, False, True, False, True, False]  # drop |-0.1|, grow |-0.9|
    assert new.tolist() == [False, False, False, False, True, False]
    # A dropped weight whose gradient is the largest comes straight back, and is not new.
    grad = torch.tensor([0.0, 5.0, 0.0, 0.3, -0.9, 0.1])
    new_mask, new = drop_and_grow(active, weight.abs(), grad.abs(), k=1)
    assert new_mask.tolist() == active.tolist() and not new.any()
    same, none = drop_and_grow(active, weight.abs(), grad.abs(), k=0)
    assert torch.equal(same, active) and not none.any()
    with pytest.raises(ValueError, match="k must be"):
        drop_and_grow(active, weight.abs(), grad.abs(), k=4)


def test_update_resets_only_new_connections():
    """One layer update through the updater: the regrown-at-once weight keeps value and momentum, the new one is reset."""
    layer = nn.Linear(6, 1, bias=False)
    model = nn.Sequential(layer)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.1, 2.0, 0.0, 0.0, 0.0]]))
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])})
    original = layer.parametrizations.weight.original
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.state[original]["momentum_buffer"] = torch.ones_like(original)

    class Scripted(SET):  # grow the just-dropped weight 1 and the inactive weight 4
        def grow_scores(self, name, weight, mask):
            return torch.tensor([[0.0, 9.0, 0.0, 0.0, 5.0, 0.0]])

    ctx = TrainContext(model=model, data=None, config=None, device=CPU, history=None, steps_per_epoch=1,
                       total_steps=1, optimizer=optimizer)
    mask = mask_layers(model)["0.weight"]
    Scripted(0.5, "uniform").update_layer(ctx, "0.weight", mask, fraction=2 / 3)  # k = 2: drop w1 and w0
    assert mask.mask.tolist() == [[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]
    assert original[0, 1] == -0.1 and original[0, 4] == 0.0  # regrown at once: not new; grown: starts at 0
    momentum = optimizer.state[original]["momentum_buffer"]
    assert momentum[0, 1] == 1.0 and momentum[0, 4] == 0.0 and momentum[0, 2] == 1.0


@torch.no_grad()
def test_fan_in_scaling_restores_the_dense_output_scale():
    torch.manual_seed(0)
    layer = nn.Linear(784, 300)
    model = nn.Sequential(layer)
    x = torch.randn(512, 784)
    dense_std = float((x @ layer.weight.T).std())
    apply_masks(model, {"0.weight": (torch.rand(300, 784) < 0.05).float()})
    sparse_std = float((x @ layer.weight.T).std())
    scale_to_kept_fan_in(model)
    scaled_std = float((x @ layer.weight.T).std())
    assert sparse_std < 0.35 * dense_std  # sqrt(0.05) = 0.22
    assert scaled_std == pytest.approx(dense_std, rel=0.1)
    assert torch.equal(get_masks(model)["0.weight"].bool(), layer.weight != 0)


def test_sparse_trainers_start_from_fan_in_scaled_weights_unless_told_not_to():
    stds = {}
    for fan_in_init in (True, False):
        model = build_model("lenet300")
        trainer = Static(0.95, "uniform", fan_in_init=fan_in_init)
        train(model, _toy_data(n=32), TrainConfig(epochs=1, batch_size=32, lr=1e-12), hooks=[trainer], progress=False,
              device=CPU)
        w = model.net.fc1.weight.detach()
        stds[fan_in_init] = float(w[w != 0].std())
    assert stds[True] / stds[False] == pytest.approx(0.05 ** -0.5, rel=0.05)


@pytest.mark.parametrize("target", [27_030, 13_720])
def test_small_dense_has_the_parameter_count_of_the_sparse_network(target):
    model = lenet300_of_size(target, seed=0)
    assert abs(count_parameters(model) - target) <= 800  # one unit more or less changes the count by ~795
    assert min(model.net.fc1.out_features, model.net.fc2.out_features) >= 10  # no layer narrower than the classes
    assert torch.equal(lenet300_of_size(target, seed=0).net.fc1.weight, model.net.fc1.weight)
    with pytest.raises(ValueError, match="at least 1"):
        lenet300_of_size(0)


def test_small_dense_keeps_its_widths_to_one_factor_until_the_floor():
    wide = lenet300_of_size(27_030)  # 90 %: both layers far above the floor
    assert wide.net.fc1.out_features == pytest.approx(3 * wide.net.fc2.out_features, abs=2)
    tiny = lenet300_of_size(5_734)  # 98 %: below any two-layer network of 10 units, which it gets instead
    assert (tiny.net.fc1.out_features, tiny.net.fc2.out_features) == (10, 10)
    assert count_parameters(tiny) == 8_070
    bottleneck = lenet300_of_size(5_734, min_width=1)  # the old rule: a 2-unit layer before 10 classes
    assert bottleneck.net.fc2.out_features < 10


def test_rank_correlation_by_hand_with_ties():
    from course_lib.sparse.tracking import rank_correlation
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(x, 10 * x ** 3) == pytest.approx(1.0)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)
    # ranks (0.5, 0.5, 2) against (0, 1, 2): 1.5 / sqrt(1.5 * 2)
    assert rank_correlation(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == \
        pytest.approx(1.5 / 3 ** 0.5)
    with pytest.raises(ValueError, match="same size"):
        rank_correlation(x, x[:3])


def test_in_degree_by_spread_groups_pixels_by_their_spread():
    from course_lib.sparse.tracking import in_degree_by_spread
    spread = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])  # order by spread: pixels 1, 5, 3, 0, 4, 2
    degree = torch.tensor([4, 1, 6, 3, 5, 2], dtype=torch.int16)
    assert in_degree_by_spread(degree, spread, groups=3) == [1.5, 3.5, 5.5]
    assert in_degree_by_spread(torch.full((6,), 7), spread, groups=2) == [7.0, 7.0]  # a flat mask, a flat line
    with pytest.raises(ValueError, match="one in-degree per pixel"):
        in_degree_by_spread(degree[:5], spread)
    with pytest.raises(ValueError, match="groups"):
        in_degree_by_spread(degree, spread, groups=7)
