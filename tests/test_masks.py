"""Masks: attached with parametrize, kept at zero under every optimizer, saved, copied, made permanent."""

import copy
import io

import pytest
import torch
from torch import nn

from course_lib import masks as M
from course_lib.costs import count_parameters, layer_costs, prunable_layers
from course_lib.models import build_model


def _random_masks(model, density=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"{n}.weight": (torch.rand(layer.weight.shape, generator=g) < density).float()
            for n, layer in prunable_layers(model).items()}


def _train_steps(model, optimizer, steps=50, hooks=()):
    g = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        for hook in hooks:
            hook(model, step)


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
], ids=["sgd", "sgd-momentum", "adam", "adamw"])
def test_pruned_weights_stay_exactly_zero(make_optimizer):
    model = build_model("lenet300")
    optimizer = make_optimizer(model.parameters())
    _train_steps(model, optimizer, steps=5)  # build up momentum / Adam state first, as in real fine-tuning
    masks = _random_masks(model)
    M.apply_masks(model, masks)
    optimizer = make_optimizer(model.parameters())
    _train_steps(model, optimizer, steps=50, hooks=[M.zero_pruned_weights])
    for name, mask in masks.items():
        layer = model.get_submodule(name.removesuffix(".weight"))
        assert torch.all(layer.weight[mask == 0] == 0), f"{name}: a pruned weight came back"
        assert torch.all(layer.parametrizations.weight.original[mask == 0] == 0)
        assert torch.any(layer.weight[mask == 1] != 0)


def test_adam_revives_weights_that_were_only_zeroed_once():
    """Why masks exist: zeroing weights once is undone by the next Adam steps."""
    model = build_model("lenet300")
    with torch.no_grad():
        model.net.fc1.weight[:, :100] = 0
    _train_steps(model, torch.optim.Adam(model.parameters(), lr=1e-2), steps=5)
    assert torch.count_nonzero(model.net.fc1.weight[:, :100]) > 0


def test_masks_survive_state_dict_round_trip_deepcopy_and_device_moves():
    model = build_model("lenet5")
    masks = _random_masks(model)
    M.apply_masks(model, masks)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_model("lenet5", seed=99)
    M.load_masked_state_dict(fresh, torch.load(buffer, weights_only=True))
    copied = copy.deepcopy(model).to("cpu")
    x = torch.randn(4, 1, 28, 28)
    for other in (fresh, copied):
        assert torch.equal(other(x), model(x))
        got = M.get_masks(other)
        assert got.keys() == masks.keys() and all(torch.equal(got[k], masks[k]) for k in masks)


def test_remove_masks_leaves_plain_layers_with_zeros():
    model = build_model("lenet300")
    masks = _random_masks(model, density=0.1)
    M.apply_masks(model, masks)
    x = torch.randn(3, 1, 28, 28)
    before = model(x)
    M.remove_masks(model)
    assert not M.is_masked(model)
    assert sorted(model.state_dict()) == sorted(build_model("lenet300").state_dict())
    assert torch.equal(model(x), before)
    assert torch.equal((model.net.fc1.weight != 0).float(), masks["net.fc1.weight"] * (model.net.fc1.weight != 0))


def test_making_a_copy_permanent_leaves_the_original_masked_and_working():
    model = build_model("lenet300")
    M.apply_masks(model, _random_masks(model))
    copied = copy.deepcopy(model)
    M.remove_masks(copied)
    x = torch.randn(2, 1, 28, 28)
    assert M.is_masked(model) and not M.is_masked(copied)
    assert torch.equal(model(x), copied(x))


def test_reapplying_replaces_the_mask_instead_of_stacking():
    model = build_model("lenet300")
    M.apply_masks(model, _random_masks(model, 0.5, seed=1))
    second = _random_masks(model, 0.5, seed=2)
    M.apply_masks(model, second)
    assert len(model.net.fc1.parametrizations.weight) == 1
    assert torch.equal(M.get_masks(model)["net.fc1.weight"], second["net.fc1.weight"])


def test_metrics_see_the_masked_weights_once():
    model = build_model("lenet300")
    M.apply_masks(model, _random_masks(model, density=0.25))
    costs = layer_costs(model)
    assert count_parameters(model) == 266_610
    assert costs.nonzero.sum() == sum(int(m.sum()) for m in M.get_masks(model).values())


def test_bad_masks_are_refused_with_a_reason():
    model = build_model("lenet300")
    with pytest.raises(ValueError, match=r"shape \(10, 10\).*\(300, 784\)"):
        M.apply_masks(model, {"net.fc1.weight": torch.ones(10, 10)})
    with pytest.raises(ValueError, match="only 0"):
        M.apply_masks(model, {"net.fc1.weight": torch.full((300, 784), 0.5)})
    with pytest.raises(ValueError, match="no parameter 'net.relu1.weight'"):
        M.apply_masks(model, {"net.relu1.weight": torch.ones(1)})
    rnn = nn.Sequential(nn.GRU(3, 3))
    with pytest.raises(TypeError, match="GRU layers are not supported"):
        M.apply_masks(rnn, {"0.weight_ih_l0": torch.ones(9, 3)})
    assert not M.is_masked(model), "a refused mask must not leave anything attached"


def test_mask_sparsity():
    assert M.mask_sparsity({"a": torch.tensor([1.0, 0, 0, 1]), "b": torch.zeros(4)}) == 0.75
