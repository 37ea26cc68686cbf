"""The checks of exercise 6: sparse training."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import DataSplits
from course_lib.masks import WeightMask, mask_layers, prunable_weights
from course_lib.models import build_model
from course_lib.sparse import densities, schedules, updaters
from course_lib.training import TrainConfig, TrainContext, train
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
    # Ties, as in a real run (weights grown at zero, inputs from dead units): the lower index goes first.
    # Ties, as in a real run (weights grown at zero, inputs from dead units): the lower index goes first.
    ties = (torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0]]),
            torch.tensor([[True, True, True, True, True, False, False, False]]),
            torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]), 2)
    cases.append(ties)
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
        cut = torch.where(mask, weight.abs(), torch.inf).flatten().kthvalue(k).values  # ties at the cut may all go
        smallest = (mask & (weight.abs() <= cut)).flatten()
        dropped = mask & ~got_mask
        if torch.any(dropped & ~smallest.reshape(shape)):
            fail(f"{where}: you dropped weights with |w| {sorted(weight.abs()[dropped].tolist())[:3]}..., but only "
                  f"the k smallest |w| of the active weights may go ({sorted(weight.abs()[mask].tolist())[:3]}...).")
        if torch.equal(got_mask, mask) and not torch.equal(expected_mask, mask):
            fail(f"{where}: your update changed nothing - the weights you dropped came straight back. Grow by "
                  "|dense gradient|: by |w|, the just-dropped weights are the largest inactive ones.")
        if not torch.equal(got_mask, expected_mask) and weight is ties[0]:
            fail(f"{where}, with equal |w| and equal gradients: ties must go to the LOWER index, for the drop (equal |w|) and for "
                 "the grow (equal |gradient|): sort with torch.argsort(..., stable=True).")
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


# ------------------------------------------------------------------ the whole RigL update step, through a real run

class _NoDenseGradient(updaters.RigL):
    """A slip: grows by the gradient the masked weight received (zero wherever the mask is 0)."""

    def before_forward(self, ctx: TrainContext) -> None:
        pass

    def grow_scores(self, name: str, weight: torch.Tensor, mask: WeightMask) -> torch.Tensor:
        return weight.grad.abs() if weight.grad is not None else torch.zeros_like(weight)


class _NoReset(updaters.RigL):
    """A slip: new connections start at zero, but with the optimizer state of the weight they replace."""

    @torch.no_grad()
    def update_layer(self, ctx: TrainContext, name: str, mask: WeightMask, fraction: float) -> None:
        optimizer, ctx.optimizer = ctx.optimizer, None  # the library resets nothing without an optimizer
        try:
            super().update_layer(ctx, name, mask, fraction)
        finally:
            ctx.optimizer = optimizer


class _NoSkip(updaters.RigL):
    """A slip: the ordinary weight update of the update step still runs."""

    def after_backward(self, ctx: TrainContext) -> None:
        super().after_backward(ctx)
        ctx.skip_step = False


_SLIPS = {
    _NoDenseGradient: "you grew by the gradient the MASKED weight received, which is zero wherever the mask is 0. "
                      "Before the forward pass of an update step set `capture_dense_grad = True` on every mask "
                      "(mask_layers(ctx.model)); after backward, grow by `mask.dense_grad`",
    _NoReset: "the regrown weights kept the optimizer state (Adam's moments) of before: zero every per-weight "
              "buffer of ctx.optimizer.state[weight] at the new connections",
    _NoSkip: "the update step also took its ordinary optimizer step: set ctx.skip_step = True on an update step "
             "(RigL's mask update replaces that step's weight update)",
}
_LIBRARY_PARTS = ("update_layer", "before_forward", "after_backward")


def _toy_splits() -> DataSplits:
    g = torch.Generator().manual_seed(61)
    images = torch.randn(160, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (160,), generator=g)
    parts = [TensorDataset(images[a:b], labels[a:b]) for a, b in ((0, 96), (96, 128), (128, 160))]
    return DataSplits(*parts, classes=tuple(str(i) for i in range(10)), name="random images", seed=0)


def _rigl_run(rigl_class: type, data: DataSplits, refuse_library: bool = False) -> dict[str, torch.Tensor]:
    """Train LeNet-300-100 at 90 % with ``rigl_class`` for 9 Adam steps (updates at steps 2, 4 and 6)."""
    model = build_model("lenet300", seed=4)
    hook = rigl_class(0.9, "erk", update_every=2, seed=4)
    config = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=4)
    saved = {part: getattr(updaters.DropAndGrow, part) for part in _LIBRARY_PARTS}
    if refuse_library:
        def refuse(*_: object, **__: object) -> None:
            fail("your class called the library's own update (super().after_backward, before_forward or "
                 "update_layer): write the update step yourself - that is the task.")
        for part in _LIBRARY_PARTS:
            setattr(updaters.DropAndGrow, part, refuse)
    try:
        train(model, data, config, hooks=[hook], progress=False, device=torch.device("cpu"))
    finally:
        for part, method in saved.items():
            setattr(updaters.DropAndGrow, part, method)
    state = {f"{name}.mask": m.mask.detach().clone() for name, m in mask_layers(model).items()}
    state.update({name: p.detach().clone() for name, p in model.named_parameters()})
    return state


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def check_rigl_update(rigl_class: type) -> None:
    """``rigl_class`` subclasses ``updaters.RigL`` and writes ``before_forward`` and ``after_backward``: the update step.

    It is trained beside the library's RigL (LeNet-300-100 at 90 %, Adam, three mask updates, the same seed);
    masks and weights must end the same.
    """
    if not (isinstance(rigl_class, type) and issubclass(rigl_class, updaters.RigL)):
        fail(f"pass your class itself (a subclass of updaters.RigL), not {rigl_class!r}.")
    for part in ("before_forward", "after_backward"):
        if getattr(rigl_class, part) is getattr(updaters.RigL, part):
            fail(f"your class does not define {part}: write both before_forward and after_backward.")
    data = _toy_splits()
    got = _rigl_run(rigl_class, data, refuse_library=True)
    expected = _rigl_run(updaters.RigL, data)
    if _same(got, expected):
        ok("your update step trains exactly as the library's RigL: dense gradient kept, drop and grow, new "
           "connections at zero with fresh optimizer state, the step's weight update skipped")
        return
    masks = {k: v for k, v in got.items() if k.endswith(".mask")}
    counts = {k: (int(v.sum()), int(expected[k].sum())) for k, v in masks.items() if k in expected}
    changed = {k: c for k, c in counts.items() if c[0] != c[1]}
    if changed:
        fail(f"the number of active weights changed: {changed} (yours, expected). Each layer drops k and grows k "
             "(your update uses your drop_and_grow of task 2: does its check pass?).")
    for slip, message in _SLIPS.items():
        if _same(got, _rigl_run(slip, data)):
            fail(f"your run matches RigL with one mistake: {message}.")
    first = next(k for k in expected if k in got and not torch.allclose(got[k], expected[k], atol=1e-6))
    fail(f"after three updates {first} differs from the library's RigL, and not by one of the usual slips "
         "(dense gradient, optimizer-state reset, skipped step). Compare your update with "
         "the four steps of the task, one layer at a time - and break ties as task 2 says: equal |w| or equal "
         "gradients (weights grown at zero, dead units) go to the lower index.")
