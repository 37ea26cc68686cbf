"""Dynamic probabilistic pruning: the sampler, the learned masks at every granularity, the hook, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.dpp.masks import DPPMask, rows_layout
from course_lib.dpp.pruner import DPP, dpp_masks, freeze, row_entropy
from course_lib.dpp.sampler import (gumbel_noise, inclusion_probabilities, relaxed_top_k, sample_k_hot,
                                    successive_softmaxes, top_k_mask)
from course_lib.masks import WeightMask, get_masks, mask_layers
from course_lib.models import build_model
from course_lib.pruning.selection import keep_per_row
from course_lib.pruning.surgery import shrink
from course_lib.sparse.tracking import MaskTracker
from course_lib.training import TrainConfig, train
from tests.test_updaters import _toy_data

CPU = torch.device("cpu")


def test_gumbel_top_k_is_exactly_k_hot_and_its_relaxation_sums_to_k():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 12, generator=g, requires_grad=True)
    mask = sample_k_hot(logits, 3, temperature=0.5, generator=g)
    assert torch.equal(mask.detach().sum(dim=1), torch.full((7,), 3.0))
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    soft = relaxed_top_k(logits.detach(), 3, temperature=0.5)
    assert torch.allclose(soft.sum(dim=1), torch.full((7,), 3.0), atol=1e-5)
    # The straight-through gradient reaches the logits, though the forward value is the hard mask.
    (mask * torch.arange(12.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_a_cold_relaxation_is_the_hard_mask():
    perturbed = torch.tensor([[3.0, -1.0, 2.0, 0.5, -2.0]])
    assert torch.allclose(relaxed_top_k(perturbed, 2, temperature=0.01), top_k_mask(perturbed, 2), atol=1e-6)
    # Hot: the first softmax is about uniform (1/5 each); the second excludes the hard first pick (entry 0)
    # and spreads 1/4 over the other four.
    warm = relaxed_top_k(perturbed, 2, temperature=1000.0)
    assert torch.allclose(warm, torch.tensor([[0.2, 0.45, 0.45, 0.45, 0.45]]), atol=0.01)


def test_inclusion_frequencies_match_the_exact_plackett_luce_probabilities():
    logits = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.3])
    exact = inclusion_probabilities(logits, 2)
    assert exact.sum() == pytest.approx(2.0)
    g = torch.Generator().manual_seed(1)
    samples = torch.stack([sample_k_hot(logits, 2, 1.0, g) for _ in range(20_000)])
    assert torch.allclose(samples.mean(dim=0), exact, atol=0.015)  # 4 standard errors at 20 000 samples
    # By hand for k = 1: the softmax.
    assert torch.allclose(inclusion_probabilities(logits, 1), torch.softmax(logits, 0).to(logits.dtype), atol=1e-6)


def test_k1_agrees_in_distribution_with_torch_gumbel_softmax():
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0])
    torch.manual_seed(0)
    theirs = torch.stack([nn.functional.gumbel_softmax(logits, tau=1.0, hard=True) for _ in range(20_000)]).mean(0)
    g = torch.Generator().manual_seed(2)
    ours = torch.stack([sample_k_hot(logits, 1, 1.0, g) for _ in range(20_000)]).mean(0)
    assert torch.allclose(ours, theirs, atol=0.02)


@pytest.mark.parametrize("granularity, tile, shape, k", [
    ("weight", None, (6, 4, 3, 3), 9), ("weight", 4, (5, 16), 2), ("weight", 4, (6, 4, 3, 3), 2),
    ("kernel", None, (6, 4, 3, 3), 3), ("feature_map", None, (6, 4, 3, 3), 4), ("feature_map", None, (10, 20), 7)])
def test_every_row_keeps_exactly_k(granularity, tile, shape, k):
    mask = DPPMask(shape, k, granularity, tile, seed=3)
    for drawn in (mask.expand(mask.row_mask().detach()), mask.hard_mask()):
        assert drawn.shape == shape
        if granularity == "weight" and tile is None:
            assert torch.equal(drawn.flatten(1).sum(1), torch.full((shape[0],), float(k)))
        elif granularity == "weight":
            assert torch.equal(drawn.reshape(shape[0], -1, tile).sum(-1), torch.full((shape[0], drawn[0].numel() // tile), float(k)))
        elif granularity == "kernel":  # every filter keeps k WHOLE kernels: transposed-safe, not reshaped
            per_kernel = drawn.flatten(2)
            assert torch.all((per_kernel.sum(-1) == 0) | (per_kernel.sum(-1) == 9))
            assert torch.equal((per_kernel.sum(-1) > 0).sum(1), torch.full((shape[0],), k))
        else:
            filters = drawn.flatten(1)
            assert torch.all((filters.sum(1) == 0) | (filters.sum(1) == filters.shape[1]))
            assert int((filters.sum(1) > 0).sum()) == k


def test_bad_layouts_are_clear_errors():
    with pytest.raises(ValueError, match="must divide"):
        rows_layout((5, 10), "weight", tile=4)
    with pytest.raises(ValueError, match="convolution"):
        rows_layout((5, 10), "kernel")
    with pytest.raises(ValueError, match="k must be"):
        DPPMask((5, 10), 11)
    with pytest.raises(ValueError, match="granularity"):
        rows_layout((5, 10), "channel")


def test_the_hook_trains_the_logits_anneals_and_freezes_to_exact_k():
    model = build_model("lenet300")
    dpp = DPP(0.9, temperatures=(5.0, 0.5), logits_lr=0.05, entropy=0.01)
    train(model, _toy_data(n=128), TrainConfig(epochs=2, batch_size=32), hooks=[dpp], progress=False, device=CPU)
    learned = dpp_masks(model)
    assert set(learned) == {"net.fc1.weight", "net.fc2.weight", "net.fc3.weight"}
    assert dpp.temperature(0.0) == 5.0 and dpp.temperature(1.0) == 0.5 and dpp.temperature(7.0) == 0.5
    fresh = DPPMask(model.net.fc1.parametrizations.weight.original.shape, learned["net.fc1.weight"].k, seed=0)
    assert not torch.allclose(learned["net.fc1.weight"].logits, fresh.logits), "the logits never moved"
    freeze(model)
    masks = get_masks(model)
    assert all(isinstance(m, WeightMask) for m in mask_layers(model).values())
    for name, mask in masks.items():
        n = mask.shape[1]
        assert torch.equal(mask.sum(1), torch.full((mask.shape[0],), float(keep_per_row(0.9, n)))), name
        weight = model.get_submodule(name.removesuffix(".weight")).weight
        assert torch.all(weight[mask == 0] == 0)
    with pytest.raises(ValueError, match="no DPP masks"):
        freeze(model)


def test_a_mask_tracker_beside_dpp_leaves_the_run_unchanged():
    """The capstone counts a DPP run's FLOPs with a MaskTracker; reading the layers' costs must not draw a mask
    sample (which advanced the sampler and made the capstone's DPP differ from chapter 7's on the same seed)."""
    def trained(extra: list) -> nn.Module:
        model = build_model("vgg", seed=0)
        dpp = DPP(0.5, granularity="feature_map", exclude=("net.fc",), seed=0)
        train(model, _toy_data(n=64), TrainConfig(epochs=1, batch_size=32, seed=0), hooks=[dpp, *extra],
              progress=False, device=CPU)
        return model
    alone, watched = trained([]), trained([MaskTracker(snapshot_every=1)])
    for (name, a), (_, b) in zip(alone.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs when a MaskTracker watches the run"


def test_feature_map_dpp_freezes_to_units_that_surgery_removes():
    model = build_model("vgg")
    dpp = DPP(0.5, granularity="feature_map", exclude=("net.fc",))
    train(model, _toy_data(n=64), TrainConfig(epochs=1, batch_size=32), hooks=[dpp], progress=False, device=CPU)
    freeze(model)
    small = shrink(model)
    assert [small.net.conv1.out_channels, small.net.conv2.out_channels, small.net.conv3.out_channels] == [4, 8, 16]
    x = torch.randn(8, 1, 28, 28)
    model.eval(), small.eval()
    assert torch.allclose(model(x), small(x), atol=1e-5)


def test_entropy_regulariser_uses_the_rows_axis():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    entropy = row_entropy(logits)
    assert entropy[0] < 0.01 and entropy[1] == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_confidence_and_diversity_at_their_extremes():
    from course_lib.dpp.metrics import confidence, diversity
    flat = torch.zeros(4, 8)
    assert confidence(flat, 2) == pytest.approx(0.0, abs=1e-9) and math.isnan(diversity(flat, 2))  # no preference
    sure = torch.full((4, 8), -30.0)
    for row in range(4):  # four rows, each sure of its own two entries: disjoint choices
        sure[row, 2 * row: 2 * row + 2] = 30.0
    assert confidence(sure, 2) == pytest.approx(1.0, abs=1e-6)
    assert diversity(sure, 2) == pytest.approx(1.0, abs=1e-6)
    same = torch.full((4, 8), -30.0)
    same[:, :2] = 30.0  # every row sure of the same two entries
    assert confidence(same, 2) == pytest.approx(1.0, abs=1e-6) and diversity(same, 2) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(diversity(torch.randn(1, 8), 2))  # one row (feature maps): nothing to compare
    with pytest.raises(ValueError, match="no choice"):
        confidence(flat, 8)


def test_diversity_separates_a_shared_preference_from_row_specific_ones():
    from course_lib.dpp.metrics import confidence, diversity
    g = torch.Generator().manual_seed(0)
    own = 3.0 * torch.randn(50, 40, generator=g)  # every row its own preferences
    shared = own + 6.0 * torch.linspace(-1, 1, 40)  # plus one preference all rows share
    assert 0.0 <= confidence(own, 4) <= confidence(shared, 4) <= 1.0
    assert 0.0 <= diversity(shared, 4) < diversity(own, 4) <= 1.0


@pytest.mark.parametrize("std,k", [(0.5, 1), (1.0, 3), (2.0, 5), (4.0, 3)])
def test_rosen_inclusion_probabilities_are_close_to_the_exact_ones(std, k):
    from course_lib.dpp import metrics, sampler
    logits = std * torch.randn(8, generator=torch.Generator().manual_seed(k))
    approx = metrics.inclusion_probabilities(logits, k)
    assert float(approx.sum()) == pytest.approx(k, abs=1e-6)
    assert torch.allclose(approx.double(), sampler.inclusion_probabilities(logits, k).double(), atol=0.08)


def test_rosen_inclusion_probabilities_match_sampling_on_a_long_row():
    from course_lib.dpp import metrics
    g = torch.Generator().manual_seed(0)
    logits = 2.0 * torch.randn(4, 784, generator=g)
    draws = 3000
    frequencies = sum(top_k_mask(logits + gumbel_noise(logits.shape, g), 78) for _ in range(draws)) / draws
    assert (frequencies - metrics.inclusion_probabilities(logits, 78)).abs().max() < 0.04  # ~5 standard errors


def test_fake_quantization_stacks_after_a_mask_with_256_values_at_most():
    from torch.nn.utils import parametrize
    from course_lib.masks import apply_masks, remove_masks
    from course_lib.quantization import FakeQuantize
    layer = nn.Linear(50, 40)
    apply_masks(layer, {"weight": (torch.rand(40, 50) < 0.3).float()})
    parametrize.register_parametrization(layer, "weight", FakeQuantize(8))
    w = layer.weight
    assert w.detach().unique().numel() <= 256
    assert torch.all(w[get_masks(layer)["weight"] == 0] == 0), "a pruned weight must stay exactly zero"
    assert (w - layer.parametrizations.weight.original * get_masks(layer)["weight"]).abs().max() <= \
        layer.parametrizations.weight.original.abs().max() / 127 / 2 + 1e-7
    w.sum().backward()  # straight-through: the gradient is the mask (identity through the rounding)
    assert torch.equal(layer.parametrizations.weight.original.grad, get_masks(layer)["weight"])
    remove_masks(layer)
    assert isinstance(layer.parametrizations.weight[0], FakeQuantize), "the quantizer stays when the mask goes"


@pytest.mark.parametrize("temperature", [0.05, 0.5, 5.0])
def test_the_fast_relaxation_equals_k_successive_softmaxes_in_value_and_gradient(temperature):
    g = torch.Generator().manual_seed(4)
    x = (3 * torch.randn(6, 40, generator=g, dtype=torch.float64)).requires_grad_()
    y = x.detach().clone().requires_grad_()
    weights = torch.randn(6, 40, generator=g, dtype=torch.float64)
    fast, slow = relaxed_top_k(x, 7, temperature), successive_softmaxes(y, 7, temperature)
    assert torch.allclose(fast, slow, atol=1e-10)
    (fast * weights).sum().backward()
    (slow * weights).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-8)


def test_learned_tiles_of_four_keeping_two_are_2_4_sparse_and_magnitude_50_percent_is_not():
    from course_lib.dpp.masks import is_n_m_sparse
    from course_lib.pruning.selection import unstructured_masks
    mask = DPPMask((300, 784), 2, "weight", tile=4, seed=5)
    assert is_n_m_sparse(mask.hard_mask(), 2, 4) and is_n_m_sparse(mask.expand(mask.row_mask().detach()), 2, 4)
    half = unstructured_masks(build_model("lenet300"), 0.5, scope="local")["net.fc1.weight"]
    assert not is_n_m_sparse(half, 2, 4)
    with pytest.raises(ValueError, match="multiple of m"):
        is_n_m_sparse(torch.ones(2, 6), 2, 4)


def test_the_straight_through_gradient_is_the_relaxations_and_nothing_from_the_hard_path():
    logits = torch.randn(5, 9, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(5, 9, generator=torch.Generator().manual_seed(2))
    (sample_k_hot(logits, 3, 0.7, torch.Generator().manual_seed(3)) * weights).sum().backward()
    through_sample = logits.grad.clone()
    logits.grad = None
    noise = gumbel_noise(logits.shape, torch.Generator().manual_seed(3))  # the same noise the sample drew
    (relaxed_top_k(logits + noise, 3, 0.7) * weights).sum().backward()
    assert torch.allclose(through_sample, logits.grad, atol=1e-6)


def test_row_scope_keeps_the_k_largest_of_every_row_and_only_for_weights():
    from course_lib.pruning.selection import structured_masks, unstructured_masks
    model = build_model("lenet300", seed=0)
    masks = unstructured_masks(model, 0.9, scope="row")
    for name, mask in masks.items():
        weight = model.get_submodule(name.removesuffix(".weight")).weight.detach()
        k = keep_per_row(0.9, weight.shape[1])
        assert torch.equal(mask, top_k_mask(weight.abs(), k)), name
    with pytest.raises(ValueError, match="scope='row'"):
        structured_masks(model, 0.5, scope="row")


def test_storage_table_by_hand():
    from course_lib.dpp.storage import k_of_n_code_bits, storage_table
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]], dtype=torch.float32)  # 2 of 4 in every row
    table = storage_table({"fc.weight": mask}, dense_weights=10, value_bits=8, n_m=(2, 4))
    bits = table["bits"]
    assert k_of_n_code_bits(4, 2) == 3 and k_of_n_code_bits(5, 5) == 0
    assert bits["dense, float32"] == 32 * 22
    assert bits["CSR, float32 values + int32 indices"] == 32 * 10 + 64 * 6 + 32 * 4
    assert bits["bitmap, float32 values"] == 32 * 10 + 32 * 6 + 12
    assert bits["bitmap, 8-bit values"] == 32 * 10 + 8 * 6 + 12 + 32
    assert bits["CSR, 8-bit values + int16 indices"] == 32 * 10 + 24 * 6 + 32 * 4 + 32
    assert bits["k-of-n code, 8-bit values"] == 32 * 10 + 8 * 6 + 3 * 3 + 32
    assert bits["2:4 positions, 8-bit values"] == 32 * 10 + 10 * 6 + 32
    assert table["compression (x dense float32)"]["dense, float32"] == 1.0
    uneven = mask.clone()
    uneven[0, 2] = 1
    assert "k-of-n code, 8-bit values" not in storage_table({"fc.weight": uneven}).index
    with pytest.raises(ValueError, match="not all 2:4"):
        storage_table({"fc.weight": uneven}, n_m=(2, 4))


def test_recalibrated_batchnorm_holds_the_statistics_of_the_pass():
    from torch.utils.data import TensorDataset
    from course_lib.training import recalibrate_batchnorm
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(6))
    model[1].running_mean.fill_(5.0)  # stale statistics from "another network"
    images = torch.randn(400, 2, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    recalibrate_batchnorm(model, TensorDataset(images, torch.zeros(400, dtype=torch.long)), batch_size=100)
    flat = images.flatten(1)
    assert torch.allclose(model[1].running_mean, flat.mean(0), atol=1e-5)
    assert model[1].momentum == 0.1 and model.training


def test_joint_quantization_and_the_trace_of_confidence_and_diversity():
    from course_lib.dpp.pruner import exactly_k_per_row
    model = build_model("lenet300")
    dpp = DPP(0.9, temperatures=(2.0, 0.1), logits_lr=0.3, bits=8, record_every=2, exclude=["net.fc3"])
    train(model, _toy_data(n=128), TrainConfig(epochs=1, batch_size=32), hooks=[dpp], progress=False, device=CPU)
    steps = sorted({r["step"] for r in dpp.trace})
    assert steps == [0, 1, 2, 4] and {r["layer"] for r in dpp.trace} == {"net.fc1", "net.fc2"}
    assert all(0.0 <= r["confidence"] <= 1.0 and 0.0 <= r["diversity"] <= 1.0 for r in dpp.trace)
    freeze(model)
    for name in ("fc1", "fc2"):
        assert torch.unique(getattr(model.net, name).weight.detach()).numel() <= 256
    assert exactly_k_per_row(model, dpp)
    mask = model.net.fc1.parametrizations.weight[0].mask
    mask[0, (mask[0] == 0).nonzero()[0]] = 1.0  # one row keeps one more than k
    assert not exactly_k_per_row(model, dpp)


def test_the_trace_looks_at_doubling_steps_before_its_first_regular_record():
    dpp = DPP(0.9, record_every=20)
    assert [step for step in range(1, 51) if dpp.records_at(step, total_steps=50)] == [1, 2, 4, 8, 16, 20, 40, 50]
    assert not DPP(0.9).records_at(1, total_steps=50)  # record_every=None: no trace at all


def test_a_sampled_off_filter_is_off_after_its_batchnorm_too():
    model = build_model("vgg")
    dpp = DPP(0.5, granularity="feature_map", exclude=("net.fc",))
    train(model, _toy_data(n=64), TrainConfig(epochs=1, batch_size=32), hooks=[dpp], progress=False, device=CPU)
    seen = {}
    model.net.relu1.register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    model.train()
    model(torch.randn(16, 1, 28, 28))  # a sampled mask, as in training
    off = dpp.masks["net.conv1.weight"].last_rows.reshape(-1) == 0
    assert off.sum() == 4 and torch.all(seen["out"][:, off] == 0)  # relu(beta) would leak without SharedUnitMask
    assert torch.any(seen["out"][:, ~off] != 0)
    freeze(model)
    assert not any(isinstance(p, nn.Module) and type(p).__name__ == "SharedUnitMask"
                   for m in model.modules() for stack in getattr(m, "parametrizations", {}).values() for p in stack)


def test_short_rows_get_exact_inclusion_probabilities():
    from course_lib.dpp import metrics
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    exact = torch.stack([inclusion_probabilities(row, 2).double() for row in logits])
    assert torch.allclose(metrics._exact_inclusion(logits.double(), 2), exact, atol=1e-12)


def test_a_mask_is_decided_when_its_confidence_first_reaches_most_of_its_end():
    from course_lib.dpp.metrics import decided_after

    trace = [{"step": s, "layer": "fc1", "confidence": c, "temperature": 2.0 - s / 100}
             for s, c in [(0, 0.0), (25, 0.5), (50, 0.75), (75, 0.79), (100, 0.8)]]
    assert decided_after(trace) == {"fc1": (0.5, 1.5)}  # 0.75 >= 0.9 * 0.8 first at step 50
    with pytest.raises(ValueError, match="empty"):
        decided_after([])
