"""Criteria, scopes and structures: agreement with torch.nn.utils.prune, survivors-only ranking, bad input."""

import copy

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from course_lib.pruning import selection as P
from course_lib.masks import apply_masks, mask_sparsity
from course_lib.models import build_model


def _torch_masks(model):
    return {f"{n}.weight": m.weight_mask for n, m in model.named_modules() if hasattr(m, "weight_mask")}


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.987])
def test_global_magnitude_equals_torch_global_unstructured(sparsity):
    model = build_model("lenet300")
    ours = P.unstructured_masks(model, sparsity, scope="global")
    reference = copy.deepcopy(model)
    layers = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=sparsity)
    theirs = _torch_masks(reference)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("norm, criterion", [(1, "l1"), (2, "l2")])
def test_structured_ranking_equals_torch_ln_structured(norm, criterion):
    model = build_model("lenet5")
    ours = P.structured_masks(model, 0.5, criterion=criterion, scope="local")
    for name in ("net.conv1", "net.conv2", "net.fc1", "net.fc2"):
        layer = copy.deepcopy(model.get_submodule(name))
        prune.ln_structured(layer, "weight", amount=0.5, n=norm, dim=0)
        assert torch.equal(ours[f"{name}.weight"], layer.weight_mask), name
    assert "net.fc3.weight" not in ours, "the output layer (the classes) must never lose units"


def test_local_scope_prunes_every_layer_equally_and_global_does_not():
    model = build_model("lenet300")
    local = P.unstructured_masks(model, 0.8, scope="local")
    assert [round(1 - float(m.mean()), 3) for m in local.values()] == [0.8, 0.8, 0.8]
    global_ = P.unstructured_masks(model, 0.8, scope="global")
    assert mask_sparsity(global_) == pytest.approx(0.8, abs=1e-5)
    assert len({round(1 - float(m.mean()), 2) for m in global_.values()}) == 3


def test_rate_multiplier_prunes_the_output_layer_at_half_the_rate():
    model = build_model("lenet300")
    masks = P.unstructured_masks(model, 0.6, scope="local", rate_multipliers={"net.fc3": 0.5})
    assert 1 - masks["net.fc3.weight"].mean().item() == pytest.approx(0.3)
    assert 1 - masks["net.fc1.weight"].mean().item() == pytest.approx(0.6)


def test_exclusion_keeps_a_layer_dense():
    masks = P.unstructured_masks(build_model("lenet300"), 0.5, exclude=["net.fc3"])
    assert "net.fc3.weight" not in masks


def test_only_survivors_are_ranked_and_masks_only_shrink():
    model = build_model("lenet300")
    first = P.unstructured_masks(model, 0.5, scope="local")
    apply_masks(model, first)
    with torch.no_grad():  # make some pruned weights huge: they must stay pruned anyway
        model.net.fc1.parametrizations.weight.original.add_(10 * (1 - first["net.fc1.weight"]))
    second = P.unstructured_masks(model, 0.75, scope="local")
    assert torch.all(second["net.fc1.weight"] <= first["net.fc1.weight"])
    assert 1 - second["net.fc1.weight"].mean().item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="only shrink"):
        P.unstructured_masks(model, 0.25, scope="local")


def test_ties_are_broken_by_index():
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert P.unstructured_masks(model, 0.5)["0.weight"].tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_random_and_taylor_criteria(quick_splits):
    model = build_model("lenet300")
    a = P.unstructured_masks(model, 0.9, criterion="random", seed=1)
    b = P.unstructured_masks(model, 0.9, criterion="random", seed=1)
    c = P.unstructured_masks(model, 0.9, criterion="random", seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["net.fc1.weight"], c["net.fc1.weight"])
    taylor = P.unstructured_masks(model, 0.9, criterion="taylor", data=quick_splits.train)
    assert mask_sparsity(taylor) == pytest.approx(0.9, abs=1e-5)
    magnitude = P.unstructured_masks(model, 0.9)
    agree = (taylor["net.fc1.weight"] == magnitude["net.fc1.weight"]).float().mean()
    assert 0.8 < agree < 1.0, "Taylor scores are related to, but not the same as, magnitudes"
    with pytest.raises(ValueError, match="needs data"):
        P.unstructured_masks(model, 0.5, criterion="taylor")


def test_n_of_m_keeps_exactly_n_per_group():
    model = build_model("lenet300")
    masks = P.n_of_m_masks(model, 2, 4)
    for mask in masks.values():
        assert torch.all(mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2)
    w = model.net.fc1.weight.detach().abs().reshape(300, -1, 4)
    kept = masks["net.fc1.weight"].reshape(300, -1, 4).bool()
    assert torch.all(w[kept].reshape(300, -1, 2).min(-1).values >= w[~kept].reshape(300, -1, 2).max(-1).values)


def test_n_of_m_on_convolutions_groups_input_channels():
    model = build_model("vgg")
    masks = P.n_of_m_masks(model, 1, 4, exclude=["net.conv1"])  # the first conv has a single input channel
    conv = masks["net.conv2.weight"]  # (16, 8, 3, 3): groups of 4 input channels at each kernel position
    assert torch.all(conv.reshape(16, 2, 4, 3, 3).sum(2) == 1)
    with pytest.raises(ValueError, match="net.conv1.weight has 1 inputs"):
        P.n_of_m_masks(model, 1, 4)


def test_structured_masks_take_bias_and_batchnorm_with_the_unit():
    model = build_model("vgg")
    with torch.no_grad():  # BN scales start at 1 (all tied); give them the spread training gives
        for bn in (model.net.bn1, model.net.bn2, model.net.bn3):
            bn.weight.copy_(torch.rand(bn.num_features, generator=torch.Generator().manual_seed(bn.num_features)))
    masks = P.structured_masks(model, 0.5, criterion="bn_scale", scope="global")
    filters_kept = masks["net.conv2.weight"].flatten(1).amax(1)
    assert torch.equal(masks["net.bn2.weight"], filters_kept) and torch.equal(masks["net.bn2.bias"], filters_kept)
    # The BN weight masks are the per-unit keep vectors of the three conv layers.
    units = sum(int(masks[f"{bn}.weight"].sum()) for bn in ("net.bn1", "net.bn2", "net.bn3"))
    assert units == (8 + 16 + 32) - round(0.5 * (8 + 16 + 32))


def test_following_batchnorm_is_one_rule_for_plain_and_masked_models():
    model = build_model("vgg")
    pairs = {"net.conv1": "net.bn1", "net.conv2": "net.bn2", "net.conv3": "net.bn3"}
    assert P.following_batchnorm(model) == pairs
    apply_masks(model, P.structured_masks(model, 0.5))  # the masks' parametrizations must not hide the pairs
    assert P.following_batchnorm(model) == pairs
    relu_between = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2))
    assert P.following_batchnorm(relu_between) == {"0": "2"}
    across_flatten = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.BatchNorm1d(2), nn.Linear(2, 2))
    assert P.following_batchnorm(across_flatten) == {}


def test_global_structured_pruning_can_collapse_a_layer():
    model = build_model("lenet300")
    with torch.no_grad():
        model.net.fc2.weight.mul_(1e-3)  # a layer of tiny weights: global L1 ranking removes it first
    with pytest.raises(P.LayerCollapseError, match="net.fc2"):
        P.structured_masks(model, 0.3, scope="global")
    with pytest.warns(UserWarning, match="Layer collapse"):
        masks = P.structured_masks(model, 0.3, scope="global", allow_collapse=True)
    assert masks["net.fc2.weight"].sum() == 0
    assert P.structured_masks(model, 0.3, scope="local")["net.fc2.weight"].sum() > 0


@pytest.mark.parametrize("bad", [1.2, 1.0, -0.1, "0.5"])
def test_bad_sparsity_is_refused(bad):
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        P.unstructured_masks(build_model("lenet300"), bad)


def test_bad_names_are_refused():
    model = build_model("lenet300")
    with pytest.raises(ValueError, match="net.relu1"):
        P.unstructured_masks(model, 0.5, exclude=["net.relu1"])
    with pytest.raises(ValueError, match="scope"):
        P.unstructured_masks(model, 0.5, scope="layerwise")
    with pytest.raises(ValueError, match="BatchNorm"):
        P.unit_scores(model, ["net.fc1"], "bn_scale")
