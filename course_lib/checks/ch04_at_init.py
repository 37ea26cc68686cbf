"""The checks of exercise 4: pruning at initialization."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from course_lib import costs
from course_lib.pruning import selection
from course_lib.masks import prunable_weights
from course_lib.models import build_model
from course_lib.checks.base import fail, ok


def check_snip(snip_scores: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict]) -> None:
    """``snip_scores(model, x, y)``: ``|w * dL/dw|`` for every Linear/Conv2d weight, one batch."""
    model = build_model("lenet300", seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    names = list(prunable_weights(model))
    expected = selection.taylor_scores(model, names, torch.utils.data.TensorDataset(x, y), num_batches=1, batch_size=64)
    got = snip_scores(copy.deepcopy(model), x, y)
    for name in names:
        if name not in got:
            fail(f"no score for {name}: return {{weight name: score}} for {names}.")
        if (got[name] < 0).any():
            fail(f"{name}: negative scores; SNIP takes the absolute value |w * g|.")
        if not torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-8):
            weight = dict(model.named_parameters())[name].detach()
            gradient = expected[name] / weight.abs().clamp_min(1e-30)  # |dL/dw| where w != 0
            ratio = float(got[name].sum() / expected[name].sum())
            if torch.allclose(got[name], gradient, rtol=1e-3, atol=1e-8):
                hint = "you returned |dL/dw| alone: multiply by the weight"
            elif abs(ratio - len(x)) < 0.01 * len(x):
                hint = (f"your scores are {len(x)}x too large, the batch size: the loss is the MEAN over the batch "
                        "(cross_entropy's default reduction), not the sum")
            else:
                hint = "use nn.functional.cross_entropy on the whole batch and the gradient of the weight"
            fail(f"{name}: scores differ from the reference ({hint}).")
    ok("SNIP scores match course_lib.pruning.taylor_scores on one batch")


def check_synflow_scores(synflow_scores: Callable[[nn.Module], dict]) -> None:
    """``synflow_scores(model)``: ``|w * dR/dw|`` with R the summed output of the all-positive network on ones."""
    from course_lib.pruning import at_init  # here: at_init is only needed by this check

    model = build_model("lenet300", seed=0)
    expected = at_init.synflow_scores(model)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    got = synflow_scores(model)
    if any(not torch.equal(p.detach(), original[n]) for n, p in model.named_parameters()):
        fail("your function changed the model's own weights: work on a copy (copy.deepcopy(model)).")
    names = list(expected)
    for name in names:
        if name not in got:
            fail(f"no score for {name}: return {{weight name: score}} for {names}.")
        if not torch.allclose(got[name].double(), expected[name].double(), rtol=1e-3, atol=0.0):
            if (got[name] < 0).any():
                hint = "some scores are negative: the parameters must all be replaced by their absolute values"
            else:
                signed = _synflow_variant(model, positive=False)
                images = _synflow_variant(model, positive=True, ones=False)
                if torch.allclose(got[name].double(), signed[name], rtol=1e-3):
                    hint = "replace EVERY parameter (weights and biases) by its absolute value before the forward pass"
                elif torch.allclose(got[name].double(), images[name], rtol=1e-3):
                    hint = "the input must be all ones, not data or noise: SynFlow needs no data"
                else:
                    hint = "score |w * dR/dw| with R = model(ones).sum(), one image of ones of shape (1, 1, 28, 28)"
            fail(f"{name}: scores differ from course_lib.pruning.at_init.synflow_scores ({hint}).")
    ok("SynFlow scores match course_lib.pruning.at_init.synflow_scores")


def _synflow_variant(model: nn.Module, positive: bool, ones: bool = True) -> dict[str, torch.Tensor]:
    """Common mistakes, for the hints: signed parameters, or a random image instead of ones."""
    work = copy.deepcopy(model).double().eval()
    if positive:
        with torch.no_grad():
            for p in work.parameters():
                p.abs_()
    x = torch.ones(1, 1, 28, 28, dtype=torch.float64) if ones else \
        torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    work(x).sum().backward()
    return {f"{n}.weight": (layer.weight * layer.weight.grad).abs().detach()
            for n, layer in costs.prunable_layers(work).items()}


def check_iterative_synflow(iterative_synflow: Callable[[nn.Module, float, int], dict]) -> None:
    """``iterative_synflow(model, sparsity, iterations)``: prune to ``sparsity`` in rounds, re-scoring each time."""
    from course_lib.pruning import at_init

    model = build_model("lenet300", seed=0)
    for sparsity, iterations in ((0.9, 10), (0.999, 100)):
        got = iterative_synflow(copy.deepcopy(model), sparsity, iterations)
        expected = at_init.synflow_masks(model, sparsity, iterations)
        total = sum(int(m.sum()) for m in got.values())
        should = sum(int(m.sum()) for m in expected.values())
        if abs(total - should) > 1:
            fail(f"at {sparsity:.1%} you kept {total} weights in all, expected {should}: after the last round the "
                  "sparsity must be the target.")
        one_shot = at_init.init_masks(model, "synflow-oneshot", sparsity)
        if all(torch.equal(got[n].float(), one_shot[n].float()) for n in got):
            fail(f"at {sparsity:.1%} your masks are those of ONE round of SynFlow: prune a little, re-score the "
                  f"pruned network, {iterations} times.")
        empty = [n for n, m in got.items() if m.sum() == 0]
        if empty:
            fail(f"at {sparsity:.1%} with {iterations} rounds, layers {empty} lost every weight: score each round "
                  "on the network with the previous round's masks applied.")
        agree = sum(int((got[n] * expected[n]).sum()) for n in expected) / max(should, 1)
        if agree < 0.99:
            fail(f"at {sparsity:.1%}: only {agree:.1%} of the kept weights agree with the library's. Round k keeps "
                  f"(1 - sparsity) ** (k / iterations) of the weights, ranked globally by the scores of the network "
                  "with the previous round's masks applied.")
    ok("iterative SynFlow keeps every layer at 99.9 % and agrees with course_lib.pruning.at_init.synflow_masks")


def check_collapse(collapsed: Callable[[dict], list]) -> None:
    """``collapsed(masks)``: the names of the layers whose mask keeps no weight."""
    cases = [
        {"net.fc1.weight": torch.zeros(3, 4), "net.fc2.weight": torch.ones(2, 3)},
        {"net.fc1.weight": torch.tensor([[0.0, 1.0]]), "net.fc2.weight": torch.zeros(1, 1),
         "net.fc3.weight": torch.zeros(2, 2)},
        {"net.fc1.weight": torch.ones(2, 2)},
    ]
    for masks in cases:
        expected = selection.collapsed_layers(masks)
        got = sorted(collapsed(masks))
        if got != sorted(expected):
            fail(f"for masks with kept counts {[int(m.sum()) for m in masks.values()]} you returned {got}, "
                  f"expected {expected} (layer names without '.weight').")
    ok("collapsed layers found in 3 cases, as course_lib.pruning.collapsed_layers")
