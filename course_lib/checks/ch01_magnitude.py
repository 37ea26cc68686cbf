"""The checks of exercise 1: magnitude pruning."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from course_lib import costs
from course_lib.pruning import selection
from course_lib.sparse import schedules
from course_lib.models import build_model
from course_lib.checks.base import fail, ok


def _single_layer(weight: torch.Tensor) -> nn.Module:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(layer)


def check_local_magnitude_mask(local_magnitude_mask: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``local_magnitude_mask(weight, sparsity)``: 0/1 mask removing the smallest |w|."""
    g = torch.Generator().manual_seed(0)
    for shape, sparsity in [((4, 5), 0.5), ((30, 20), 0.9), ((100, 50), 0.25)]:
        weight = torch.randn(shape, generator=g)
        expected = selection.unstructured_masks(_single_layer(weight), sparsity, scope="local")["0.weight"]
        got = local_magnitude_mask(weight.clone(), sparsity)
        if tuple(got.shape) != shape:
            fail(f"the mask has shape {tuple(got.shape)}; it must have the weight's shape {shape}.")
        kept, should = int(got.sum()), int(expected.sum())
        if kept != should:
            fail(f"{shape} weight at sparsity {sparsity}: you kept {kept} weights, expected {should} "
                  f"(prune round(sparsity x {weight.numel()}) = {weight.numel() - should}).")
        if not torch.equal(got.float(), expected):
            by_value = selection.masks_from_scores(_single_layer(weight), {"0.weight": weight.clone()}, sparsity,
                                                 scope="local")["0.weight"]
            hint = "are you ranking w instead of |w|?" if torch.equal(got.float(), by_value) else \
                "keep the weights with the LARGEST |w|."
            fail(f"{shape} weight at sparsity {sparsity}: right count, but different weights kept; {hint}")
    ok("local magnitude masks match course_lib.pruning.unstructured_masks(scope='local')")


def check_global_magnitude_masks(global_magnitude_masks: Callable[[dict[str, torch.Tensor], float], dict]) -> None:
    """``global_magnitude_masks({name: weight}, sparsity)``: one ranking over all layers."""
    model = build_model("lenet300", seed=3)
    weights = {f"{n}.weight": layer.weight.detach().clone() for n, layer in costs.prunable_layers(model).items()}
    for sparsity in (0.5, 0.9):
        expected = selection.unstructured_masks(model, sparsity, scope="global")
        got = global_magnitude_masks({k: v.clone() for k, v in weights.items()}, sparsity)
        if set(got) != set(expected):
            fail(f"return one mask per weight, keyed {sorted(expected)}; you returned {sorted(got)}.")
        for name in expected:
            kept, should = int(got[name].sum()), int(expected[name].sum())
            if kept != should:
                local = round((1 - sparsity) * weights[name].numel())
                hint = " That is the LOCAL count: rank all layers together." if kept == local else \
                    " Are you ranking |w| or w?"
                fail(f"layer {name.removesuffix('.weight')} at {sparsity:.0%}: you kept {kept} weights, "
                      f"expected {should}.{hint}")
            if not torch.equal(got[name].float(), expected[name]):
                fail(f"layer {name}: right count, but other weights kept; keep the largest |w| over all layers.")
    ok("global magnitude masks match course_lib.pruning.unstructured_masks(scope='global')")


def check_prune_trained(prune_trained: Callable[[nn.Module, float], nn.Module], model: nn.Module) -> None:
    """``prune_trained(model, sparsity)``: a copy of ``model`` with its smallest weights (global ranking) set to zero."""
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    for sparsity in (0.5, 0.9):
        got = prune_trained(model, sparsity)
        if got is model or any(not torch.equal(p.detach(), original[n]) for n, p in model.named_parameters()):
            fail("the trained model itself changed: prune a copy (copy.deepcopy(model)) and return it.")
        expected = selection.unstructured_masks(model, sparsity, scope="global")
        params = dict(got.named_parameters())
        for name, mask in expected.items():
            weight = params[name].detach()
            if not torch.equal(weight, original[name] * mask.to(weight.device)):
                kept = int((weight != 0).sum())
                fail(f"{name} at {sparsity:.0%}: {kept} non-zero weights where global magnitude pruning keeps "
                      f"{int(mask.sum())}; multiply each weight by its mask from your global_magnitude_masks.")
        for name, value in params.items():
            if name not in expected and not torch.equal(value.detach(), original[name]):
                fail(f"{name} changed: prune the Linear/Conv2d weights only, not the biases.")
    ok("your pruned copies match global magnitude pruning at 50 % and 90 %; the trained model is untouched")


def check_agp(agp_sparsity: Callable[[int, float, int, int, float], float]) -> None:
    """``agp_sparsity(step, final, begin, end, initial)``: the cubic AGP schedule."""
    for step in (-10, 0, 25, 50, 99, 100, 150):
        expected = schedules.agp_sparsity(step, 0.9, 0, 100, 0.1)
        got = agp_sparsity(step, 0.9, 0, 100, 0.1)
        if abs(got - expected) > 1e-9:
            progress = min(max(step / 100, 0.0), 1.0)
            linear = 0.1 + (0.9 - 0.1) * progress
            if step in (-10, 150):
                hint = "before begin and after end the sparsity stays constant"
            elif abs(got - linear) < 1e-9:
                hint = ("that is a straight line; AGP prunes fastest at the start and slows down to zero slope at "
                        "the end: a cube of the progress still to go")
            elif abs(got - (0.9 + (0.1 - 0.9) * progress ** 3)) < 1e-9:
                hint = "the cube of the progress made is slowest at the start: cube the progress still to go"
            else:
                hint = "check the value at begin (the initial sparsity) and at end (the final one)"
            fail(f"at step {step} (begin 0, end 100, initial 0.1, final 0.9) you gave {got:.4f}, "
                  f"expected {expected:.4f}: {hint}.")
    ok("AGP sparsities match course_lib.sparse.schedules.agp_sparsity at 7 steps")
