"""The checks of exercise 6: sparse training."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from course_lib.sparse import densities, schedules, updaters
from course_lib.masks import prunable_weights
from course_lib.models import build_model
from course_lib.checks.base import fail, ok


def _erk_cases() -> list[tuple[str, nn.Module, float]]:
    conv_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 100), nn.Linear(100, 10))
    return [("LeNet-300-100 at 90 %", build_model("lenet300"), 0.9),
            ("LeNet-300-100 at 98 %", build_model("lenet300"), 0.98),
            ("a conv + two Linear layers at 50 %", conv_net, 0.5),
            ("two convolutions and a Linear layer at 90 %",
             nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16 * 24 * 24, 10)), 0.9)]


def check_erk_densities(erk_densities: Callable[[dict[str, tuple[int, ...]], float], dict[str, float]]) -> None:
    """``erk_densities(shapes, sparsity)``: ERK layer densities from weight shapes, capped at 1 and re-solved."""
    for what, model, sparsity in _erk_cases():
        shapes = {name: tuple(layer.weight.shape) for name, layer in prunable_weights(model).items()}
        expected = densities.layer_densities(model, sparsity, "erk")
        got = erk_densities(dict(shapes), sparsity)
        if not isinstance(got, dict) or set(got) != set(shapes):
            fail(f"{what}: return a dict with one density per layer name {sorted(shapes)}; got {got!r}.")
        got = {n: float(v) for n, v in got.items()}
        if all(math.isclose(got[n], expected[n], rel_tol=1e-6, abs_tol=1e-9) for n in shapes):
            continue
        over = [n for n, d in got.items() if d > 1 + 1e-9]
        if over:
            fail(f"{what}: {over} got a density above 1 ({max(got[n] for n in over):.3f}). A layer that ERK would "
                  "make denser than dense is made dense (1.0), and eps is solved again over the other layers.")
        n_weights = {n: math.prod(shape) for n, shape in shapes.items()}
        kept = sum(got[n] * n_weights[n] for n in shapes)
        budget = (1 - sparsity) * sum(n_weights.values())
        if not math.isclose(kept, budget, rel_tol=1e-4):
            fail(f"{what}: your densities keep {kept:,.0f} weights, the budget is (1 - sparsity) x all weights = "
                  f"{budget:,.0f}. Choose eps so that sum(density_i * n_i) hits the budget.")
        er = densities.layer_densities(model, sparsity, "er")
        if any(len(shape) > 2 for shape in shapes.values()) and all(math.isclose(got[n], er[n], rel_tol=1e-6)
                                                                     for n in shapes):
            fail(f"{what}: these are Erdős–Rényi densities. ERK counts the kernel too: "
                  "(n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w).")
        worst = max(shapes, key=lambda n: abs(got[n] - expected[n]))
        fail(f"{what}: {worst} got density {got[worst]:.4f}, expected {expected[worst]:.4f} "
              f"(course_lib.sparse.densities.layer_densities). All: expected "
              f"{ {n: round(v, 4) for n, v in expected.items()} }.")
    ok("ERK densities match course_lib.sparse.densities.layer_densities, including a layer capped at dense")


def check_drop_and_grow(drop_and_grow: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int],
                                                 tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``drop_and_grow(weight, mask, dense_grad, k)`` -> ``(new_mask, new_weight)``: one RigL update of one layer."""
    g = torch.Generator().manual_seed(6)
    cases = []
    for shape, density, k in (((6, 8), 0.5, 5), ((30, 40), 0.1, 36), ((4, 5), 0.25, 5)):
        weight = torch.randn(shape, generator=g)
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        mask[torch.randperm(weight.numel(), generator=g)[: round(density * weight.numel())]] = True
        # The stored weight keeps stale values where the mask is 0 (as parametrize's ``original`` can): a grown
        # connection that is not reset to zero shows.
        cases.append((weight, mask.reshape(shape), torch.randn(shape, generator=g), k))
    # By hand: w = 0.1 is dropped, but its gradient is the largest, so it comes straight back (and keeps 0.1);
    # the weight at position 4 (stale value -0.4) is grown and must start at 0.
    cases.append((torch.tensor([[0.5, 0.1, 2.0, 0.7, -0.4, 0.2]]), torch.tensor([[True, True, True, False, False, False]]),
                  torch.tensor([[0.0, 9.0, 0.0, 0.3, 5.0, 0.1]]), 2))
    for weight, mask, grad, k in cases:
        shape = tuple(weight.shape)
        expected_mask, new = updaters.drop_and_grow(mask, (weight * mask).abs(), grad.abs(), k)
        got_mask, got_weight = drop_and_grow(weight.clone(), mask.clone(), grad.clone(), k)
        got_mask = torch.as_tensor(got_mask).bool()
        where = f"a {shape[0]}x{shape[1]} layer with {int(mask.sum())} active weights, k = {k}"
        if got_mask.shape != mask.shape or torch.as_tensor(got_weight).shape != weight.shape:
            fail(f"{where}: return a mask and a weight of the layer's shape {tuple(shape)}.")
        if int(got_mask.sum()) != int(mask.sum()):
            fail(f"{where}: your mask has {int(got_mask.sum())} active weights, it must keep exactly "
                  f"{int(mask.sum())}: drop k ACTIVE weights (inactive ones are 0: leave them out of the drop "
                  "ranking), then grow k.")
        smallest = torch.zeros(weight.numel(), dtype=torch.bool)
        smallest[torch.where(mask.flatten(), weight.abs().flatten(), torch.inf).argsort()[:k]] = True
        dropped = mask & ~got_mask
        if torch.any(dropped & ~smallest.reshape(shape)):
            fail(f"{where}: you dropped weights with |w| {sorted(weight.abs()[dropped].tolist())[:3]}..., but only "
                  f"the k smallest |w| of the active weights may go ({sorted(weight.abs()[mask].tolist())[:3]}...).")
        if torch.equal(got_mask, mask):
            fail(f"{where}: your update changed nothing - the weights you dropped came straight back. Grow by "
                  "|dense gradient|: by |w|, the just-dropped weights are the largest inactive ones.")
        if not torch.equal(got_mask, expected_mask):
            fail(f"{where}: you grew the wrong weights. Grow the k largest |dense gradient| among the weights "
                  "inactive after the drop (a weight just dropped may be grown back).")
        got_weight = torch.as_tensor(got_weight)
        survivors = mask & got_mask
        if torch.any(got_weight[new] != 0):
            fail(f"{where}: {int((got_weight[new] != 0).sum())} grown connection(s) kept the stale value the "
                 "stored weight held where the mask was 0. New connections (grown, not active before) must "
                 "start at exactly zero: set them to 0 in the weight you return.")
        if not torch.equal(got_weight[survivors], weight[survivors]):
            fail(f"{where}: weights that stayed active must keep their values - including a weight dropped and "
                  "grown back in the same update: it is not a new connection.")
    ok("drop and grow: same count, smallest survivors dropped, largest inactive gradients grown, new weights at 0")


def check_cosine_drop_fraction(cosine_drop_fraction: Callable[[int, float, int], float]) -> None:
    """``cosine_drop_fraction(step, alpha, end_step)``: alpha * (1 + cos(pi * t / T_end)) / 2, zero after T_end."""
    for alpha, end in ((0.3, 1000), (0.5, 120)):
        for step in (0, 1, end // 4, end // 2, end - 1, end, end + end // 2):
            expected = schedules.cosine_drop_fraction(step, alpha, 0, end)
            got = cosine_drop_fraction(step, alpha, end)
            try:
                got = float(got)
            except (TypeError, ValueError):
                fail(f"cosine_drop_fraction({step}, {alpha}, {end}) must return a number, got {got!r}.")
            if math.isclose(got, expected, abs_tol=1e-9):
                continue
            if step == 0 and math.isclose(got, 2 * alpha):
                hint = "you forgot the division by 2: at t = 0 the fraction is alpha, not 2 alpha"
            elif step > end:
                hint = "after T_end nothing moves any more: clamp t / T_end to 1 (the cosine would rise again)"
            else:
                hint = "alpha * (1 + cos(pi * t / T_end)) / 2, with the alpha and T_end you are given"
            fail(f"cosine_drop_fraction({step}, {alpha}, {end}) returned {got:.10g}, expected {expected:.10g} "
                 f"(off by {got - expected:+.2e}, more than rounding): {hint}.")
    ok("cosine drop fraction matches course_lib.sparse.schedules.cosine_drop_fraction for two schedules")
