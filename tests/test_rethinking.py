"""Chapter 5's tools: Scratch-B budgets, re-initialised scratch models, network slimming's threshold and floor."""

import math

import pytest
import torch

from course_lib.masks import apply_masks, get_masks
from course_lib.models import build_model
from course_lib.pruning import rethinking, slimming
from course_lib.pruning.selection import structured_masks, unstructured_masks
from course_lib.pruning.surgery import shrink
from course_lib.training import TrainConfig


def test_scratch_b_factor_is_the_mac_ratio_with_an_optional_cap():
    assert rethinking.scratch_b_factor(1000, 250) == 4.0
    assert rethinking.scratch_b_factor(1000, 250, cap=2.0) == 2.0
    assert rethinking.scratch_b_factor(1000, 1000) == 1.0
    with pytest.raises(ValueError, match="order"):
        rethinking.scratch_b_factor(250, 1000)
    with pytest.raises(ValueError, match="positive"):
        rethinking.scratch_b_factor(1000, 0)
    with pytest.raises(ValueError, match="at least 1"):
        rethinking.scratch_b_factor(1000, 250, cap=0.5)


def test_scratch_b_config_trains_dense_epochs_times_the_mac_ratio_in_steps():
    dense = build_model("vgg")
    small = shrink(_l1_pruned(dense, keep=0.5))
    ratio = rethinking.total_macs(dense) / rethinking.total_macs(small)
    assert 3.0 < ratio < 4.5, "keeping half the filters of every layer cuts MACs by about 4"
    config = TrainConfig(epochs=3, batch_size=100)
    b = rethinking.scratch_b_config(config, 1000, dense, small)  # 10 steps per epoch, 30 steps dense
    assert b.steps == round(30 * ratio) and b.epochs == math.ceil(b.steps / 10)
    assert math.isclose(rethinking.epochs_of(b, 1000), b.steps / 10)
    capped = rethinking.scratch_b_config(config, 1000, dense, small, cap=2.0)
    assert capped.steps == 60 and rethinking.epochs_of(capped, 1000) == 6.0


def _l1_pruned(model, keep):
    masked = build_model("vgg")
    masked.load_state_dict(model.state_dict())
    apply_masks(masked, structured_masks(masked, 1.0 - keep, criterion="l1"))
    return masked


def test_a_scratch_model_is_a_new_network_of_the_same_architecture():
    trained = shrink(_l1_pruned(build_model("vgg", seed=3), keep=0.5))
    trained.net.bn1.running_mean.fill_(0.7)  # as after training
    fresh = rethinking.reinitialized(trained, seed=0)
    assert repr(fresh) == repr(trained), "the architecture must be the pruned one"
    assert not rethinking.shares_storage(fresh, trained), "a scratch model must not share memory with the pruned one"
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        if name in ("net.conv1.weight", "net.conv3.weight", "net.fc.weight", "net.bn1.running_mean"):
            assert not torch.equal(a, b), f"{name} was not re-initialised"
    again = rethinking.reinitialized(trained, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values())), \
        "the same seed must give the same scratch model"
    other = rethinking.reinitialized(trained, seed=1)
    assert not torch.equal(other.net.conv2.weight, fresh.net.conv2.weight)


def test_an_unstructured_scratch_model_keeps_the_mask_and_scales_to_the_sparse_fan_in():
    model = build_model("lenet300", seed=2)
    apply_masks(model, unstructured_masks(model, 0.95, scope="local"))
    masks = get_masks(model)
    fresh = rethinking.reinitialized(model, seed=0)
    plain = rethinking.reinitialized(model, seed=0, scale_to_fan_in=False)
    assert all(torch.equal(get_masks(fresh)[k], masks[k]) for k in masks), "the mask is the architecture: keep it"
    w, m = fresh.net.fc1.weight.detach(), masks["net.fc1.weight"]
    assert torch.all(w[m == 0] == 0), "pruned weights must be zero in the scratch model too"
    # Each row's kept weights are scaled by sqrt(784 / kept inputs of that row).
    kept = m.sum(dim=1, keepdim=True)
    assert torch.allclose(w, plain.net.fc1.weight.detach() * torch.sqrt(784 / kept.clamp(min=1)))
    dense_std = build_model("lenet300", seed=0).net.fc1.weight.detach().std() * math.sqrt(784)
    sparse_std = (w[m == 1] * torch.sqrt(kept.expand_as(w)[m == 1])).std()
    assert 0.8 < float(sparse_std / dense_std) < 1.2, "scaled to the kept fan-in, a unit's output variance matches dense"


def test_the_l1_hook_and_the_threshold_rank_bn_scales_of_the_whole_network():
    model = build_model("vgg")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.net.bn1.weight.copy_(torch.rand(8, generator=g))
        model.net.bn2.weight.copy_(torch.rand(16, generator=g) - 0.5)  # the sign does not matter, |gamma| does
        model.net.bn3.weight.copy_(torch.rand(32, generator=g) * 2)
    scales = slimming.batchnorm_scales(model)
    assert list(scales) == ["net.conv1", "net.conv2", "net.conv3"]
    assert torch.equal(scales["net.conv2"], model.net.bn2.weight.detach().abs())
    everything = torch.sort(torch.cat(list(scales.values()))).values
    t = slimming.global_threshold(scales, 0.25)
    assert t == float(everything[round(0.25 * 56) - 1])
    keep = slimming.slimming_keep(scales, t)
    assert sum(int(k.sum()) for k in keep.values()) == 56 - 14, "a quarter of all channels, ranked together"
    assert slimming.global_threshold(scales, 0.0) == -math.inf
    with pytest.raises(ValueError, match="prune_fraction"):
        slimming.global_threshold(scales, 1.2)


def test_the_floor_prevents_the_empty_layer_a_global_threshold_makes():
    model = build_model("vgg")
    with torch.no_grad():
        model.net.bn1.weight.fill_(1.0)
        model.net.bn2.weight.copy_(torch.linspace(0.001, 0.01, 16))  # the L1 term pushed a whole layer down
        model.net.bn3.weight.fill_(1.0)
    scales = slimming.batchnorm_scales(model)
    t = slimming.global_threshold(scales, 0.3)
    assert int(slimming.slimming_keep(scales, t, min_channels=1)["net.conv2"].sum()) >= 1
    plain = {layer: s > t for layer, s in scales.items()}
    assert int(plain["net.conv2"].sum()) == 0, "without a floor the global threshold empties conv2"
    keep = slimming.slimming_keep(scales, t, min_channels=4)
    assert keep["net.conv2"].tolist() == [False] * 12 + [True] * 4, "the floor keeps the layer's largest scales"
    masks = slimming.slimming_masks(model, t, min_channels=4)
    apply_masks(model, masks)
    small = shrink(model)
    assert small.net.conv2.out_channels == 4 and small.net.bn2.num_features == 4
    assert small.net.conv3.in_channels == 4
    with pytest.raises(ValueError, match="min_channels"):
        slimming.slimming_keep(scales, t, min_channels=0)
