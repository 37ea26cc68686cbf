"""Masks that share a weight with other parametrizations (a learned mask, fake quantization)."""

import copy

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib import masks as M


class FakeQuant(nn.Module):
    """A stand-in for 8-bit fake quantization: rounds to a grid of 1/16 (keeps zeros at zero)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.round(w * 16) / 16


class TopHalf(M.MaskParametrization):
    """A learned-mask stand-in: keeps the entries whose logit is in the top half of each row."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))

    def hard_mask(self) -> torch.Tensor:
        k = self.logits.shape[1] // 2
        return torch.zeros_like(self.logits).scatter(1, self.logits.topk(k, dim=1).indices, 1.0)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.hard_mask()


def _layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 4))


def _mask(shape=(4, 8)) -> torch.Tensor:
    return (torch.arange(32).reshape(shape) % 3 != 0).float()


def test_a_mask_goes_before_quantization_and_get_masks_finds_it():
    model = _layer()
    parametrize.register_parametrization(model[0], "weight", FakeQuant())
    M.apply_masks(model, {"0.weight": _mask()})
    kinds = [type(p).__name__ for p in model[0].parametrizations.weight]
    assert kinds == ["WeightMask", "FakeQuant"]
    assert torch.equal(M.get_masks(model)["0.weight"], _mask())
    expected = torch.round(model[0].parametrizations.weight.original * _mask() * 16) / 16
    assert torch.equal(model[0].weight, expected)


def test_removing_masks_keeps_the_other_parametrizations():
    model = _layer()
    parametrize.register_parametrization(model[0], "weight", FakeQuant())
    M.apply_masks(model, {"0.weight": _mask()})
    before = model[0].weight.detach().clone()
    M.remove_masks(copy.deepcopy(model))  # a copy's removal must not touch the original
    assert M.is_masked(model)
    M.remove_masks(model)
    assert not M.is_masked(model)
    assert [type(p).__name__ for p in model[0].parametrizations.weight] == ["FakeQuant"]
    assert torch.equal(model[0].weight, before)
    assert torch.all(model[0].parametrizations.weight.original[_mask() == 0] == 0)


def test_a_learned_mask_is_a_mask_to_every_helper():
    model = _layer()
    parametrize.register_parametrization(model[0], "weight", TopHalf((4, 8)))
    hard = M.get_masks(model)["0.weight"]
    assert hard.sum(dim=1).tolist() == [4, 4, 4, 4]
    M.zero_pruned_weights(model)
    assert torch.all(model[0].parametrizations.weight.original[hard == 0] == 0)
    with pytest.raises(TypeError, match="TopHalf"):
        M.apply_masks(model, {"0.weight": _mask()})


@pytest.mark.parametrize("mask_position", [0, 1])
def test_loading_does_not_assume_the_mask_comes_first(mask_position):
    saved_model = _layer(seed=1)
    if mask_position == 0:
        parametrize.register_parametrization(saved_model[0], "weight", FakeQuant())
        M.apply_masks(saved_model, {"0.weight": _mask()})
    else:  # quantize first, then mask: the mask is saved at index 1
        parametrize.register_parametrization(saved_model[0], "weight", FakeQuant())
        parametrize.register_parametrization(saved_model[0], "weight", M.WeightMask(_mask()))
    state = saved_model.state_dict()
    assert f"0.parametrizations.weight.{mask_position}.mask" in state
    fresh = _layer(seed=2)
    parametrize.register_parametrization(fresh[0], "weight", FakeQuant())
    M.load_masked_state_dict(fresh, state)
    assert torch.equal(fresh[0].weight, saved_model[0].weight)
    assert torch.equal(M.get_masks(fresh)["0.weight"], _mask())


def test_the_mask_can_keep_the_dense_gradient():
    model = _layer()
    M.apply_masks(model, {"0.weight": _mask()})
    mask = M.mask_layers(model)["0.weight"]
    x = torch.randn(5, 8)
    model(x).pow(2).sum().backward()
    assert mask.dense_grad is None  # only on request
    masked_grad = model[0].parametrizations.weight.original.grad.clone()
    model.zero_grad()
    mask.capture_dense_grad = True
    model(x).pow(2).sum().backward()
    assert torch.all(masked_grad[_mask() == 0] == 0)
    assert torch.any(mask.dense_grad[_mask() == 0] != 0)
    assert torch.allclose(mask.dense_grad * _mask(), masked_grad)
