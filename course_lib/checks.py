"""Check cells of the exercises: test a student's function against the library's own and say what differs.

Each ``check_*`` function calls the student's function on small hand-made and
random cases, compares with the reference implementation in ``course_lib``
(never a copy), and either prints a one-line success or raises an
``AssertionError`` whose message says what was expected, what came back, and
the most likely mistake.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib import costs
from course_lib.pruning import lottery, rethinking, selection, slimming
from course_lib.training import Hook, TrainContext
from course_lib.sparse import densities, schedules, updaters
from course_lib.dpp import comparison as dpp_comparison, masks as dpp_masks, sampler
from course_lib.masks import apply_masks, get_masks
from course_lib.data import DataSplits
from course_lib.models import LeNet300100, build_model
from course_lib.profiles import Profile, get_profile
from course_lib.training import evaluate


class CheckFailed(AssertionError):
    """The student's function disagrees with the reference."""


def _ok(what: str) -> None:
    print(f"✓ {what}")


def _fail(message: str) -> None:
    raise CheckFailed(message)


# ------------------------------------------------------------------ chapter 0

def check_macs(linear_macs: Callable[[nn.Linear], int], conv2d_macs: Callable[[nn.Conv2d, tuple[int, int]], int]) -> None:
    """``linear_macs(layer)`` and ``conv2d_macs(layer, (H, W))``: multiply-accumulates per image."""
    for layer in (nn.Linear(784, 300), nn.Linear(10, 3, bias=False)):
        expected = int(costs.layer_costs(nn.Sequential(layer), input_shape=(layer.in_features,)).macs.item())
        got = linear_macs(layer)
        if got != expected:
            _fail(f"{layer}: you counted {got} MACs, expected {expected} = in_features x out_features "
                  "(biases are additions, not multiply-accumulates).")
    cases = [(nn.Conv2d(1, 6, 5, padding=2), (28, 28)), (nn.Conv2d(6, 16, 5), (14, 14)),
             (nn.Conv2d(3, 8, 3, stride=2), (9, 9))]
    for layer, hw in cases:
        expected = int(costs.layer_costs(nn.Sequential(layer), input_shape=(layer.in_channels, *hw)).macs.item())
        got = conv2d_macs(layer, hw)
        if got != expected:
            with torch.no_grad():
                out = layer(torch.zeros(1, layer.in_channels, *hw)).shape[-2:]
            hint = ("each weight is used once per OUTPUT position: H_out x W_out = "
                    f"{out[0]} x {out[1]} here (padding and stride change it)")
            _fail(f"{layer} on a {hw[0]}x{hw[1]} input: you counted {got} MACs, expected {expected}; {hint}.")
    _ok("MACs of 2 Linear and 3 Conv2d layers match course_lib.costs.layer_costs")


def check_median_latency(median_latency_ms: Callable[[Callable[[], object], int, int], float]) -> None:
    """``median_latency_ms(fn, warmup, repeats)``: median wall time in ms after ``warmup`` untimed calls."""
    calls = []

    def fn() -> None:  # slow for the first 3 calls (warm-up), one slow outlier later, 2 ms otherwise
        calls.append(1)
        n = len(calls)
        time.sleep(0.030 if n <= 3 or n == 8 else 0.002)

    got = median_latency_ms(fn, 3, 9)
    if len(calls) != 12:
        _fail(f"your function called fn {len(calls)} times; expected 3 warm-up + 9 timed = 12.")
    if got > 10:
        _fail(f"you measured {got:.1f} ms, but the timed calls take about 2 ms: did you time the warm-up calls, "
              "or take the mean (which one slow outlier drags up) instead of the median?")
    if got < 1.5:
        _fail(f"you measured {got:.2f} ms for calls that sleep 2 ms: are you returning milliseconds "
              "(time.perf_counter() gives seconds)?")
    _ok(f"median latency {got:.2f} ms ignores the slow warm-up calls and the outlier")


def check_break_even(break_even_sparsity: Callable[[int, int], float]) -> None:
    """``break_even_sparsity(value_bits, index_bits)``: the sparsity above which a sparse format beats dense."""
    for value_bits, index_bits in ((32, 32), (32, 16), (32, 5), (8, 4), (16, 8)):
        expected = index_bits / (value_bits + index_bits)
        got = float(break_even_sparsity(value_bits, index_bits))
        if abs(got - expected) > 1e-9:
            if abs(got - (1 - expected)) < 1e-9:
                hint = "that is the DENSITY at break-even; the question asks for the sparsity"
            elif not 0 <= got <= 1:
                hint = "a sparsity is a fraction between 0 and 1"
            else:
                hint = ("dense costs value_bits per weight, sparse costs value_bits + index_bits per KEPT weight: "
                        "set the two equal and solve for the kept fraction")
            _fail(f"values of {value_bits} bits, indices of {index_bits}: you said {got:.4f}, expected {expected:.4f} "
                  f"({hint}).")
    measured = costs.break_even(costs.storage_vs_sparsity(torch.randn(300, 784, generator=torch.Generator().manual_seed(0)),
                                                          [round(0.01 * p, 2) for p in range(100)]))
    if abs(measured["CSR, int32 indices"] - break_even_sparsity(32, 32)) > 0.02:
        _fail("your formula disagrees with the bytes torch.save writes for CSR with 32-bit indices.")
    _ok("break-even sparsities match the formula and, for 32-bit CSR, the bytes torch.save writes")


# ------------------------------------------------------------------ chapter 1

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
            _fail(f"the mask has shape {tuple(got.shape)}; it must have the weight's shape {shape}.")
        kept, should = int(got.sum()), int(expected.sum())
        if kept != should:
            _fail(f"{shape} weight at sparsity {sparsity}: you kept {kept} weights, expected {should} "
                  f"(prune round(sparsity x {weight.numel()}) = {weight.numel() - should}).")
        if not torch.equal(got.float(), expected):
            by_value = selection.masks_from_scores(_single_layer(weight), {"0.weight": weight.clone()}, sparsity,
                                                 scope="local")["0.weight"]
            hint = "are you ranking w instead of |w|?" if torch.equal(got.float(), by_value) else \
                "keep the weights with the LARGEST |w|."
            _fail(f"{shape} weight at sparsity {sparsity}: right count, but different weights kept; {hint}")
    _ok("local magnitude masks match course_lib.pruning.unstructured_masks(scope='local')")


def check_global_magnitude_masks(global_magnitude_masks: Callable[[dict[str, torch.Tensor], float], dict]) -> None:
    """``global_magnitude_masks({name: weight}, sparsity)``: one ranking over all layers."""
    model = build_model("lenet300", seed=3)
    weights = {f"{n}.weight": layer.weight.detach().clone() for n, layer in costs.prunable_layers(model).items()}
    for sparsity in (0.5, 0.9):
        expected = selection.unstructured_masks(model, sparsity, scope="global")
        got = global_magnitude_masks({k: v.clone() for k, v in weights.items()}, sparsity)
        if set(got) != set(expected):
            _fail(f"return one mask per weight, keyed {sorted(expected)}; you returned {sorted(got)}.")
        for name in expected:
            kept, should = int(got[name].sum()), int(expected[name].sum())
            if kept != should:
                local = round((1 - sparsity) * weights[name].numel())
                hint = " That is the LOCAL count: rank all layers together." if kept == local else \
                    " Are you ranking |w| or w?"
                _fail(f"layer {name.removesuffix('.weight')} at {sparsity:.0%}: you kept {kept} weights, "
                      f"expected {should}.{hint}")
            if not torch.equal(got[name].float(), expected[name]):
                _fail(f"layer {name}: right count, but other weights kept; keep the largest |w| over all layers.")
    _ok("global magnitude masks match course_lib.pruning.unstructured_masks(scope='global')")


def check_prune_trained(prune_trained: Callable[[nn.Module, float], nn.Module], model: nn.Module) -> None:
    """``prune_trained(model, sparsity)``: a copy of ``model`` with its smallest weights (global ranking) set to zero."""
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    for sparsity in (0.5, 0.9):
        got = prune_trained(model, sparsity)
        if got is model or any(not torch.equal(p.detach(), original[n]) for n, p in model.named_parameters()):
            _fail("the trained model itself changed: prune a copy (copy.deepcopy(model)) and return it.")
        expected = selection.unstructured_masks(model, sparsity, scope="global")
        params = dict(got.named_parameters())
        for name, mask in expected.items():
            weight = params[name].detach()
            if not torch.equal(weight, original[name] * mask.to(weight.device)):
                kept = int((weight != 0).sum())
                _fail(f"{name} at {sparsity:.0%}: {kept} non-zero weights where global magnitude pruning keeps "
                      f"{int(mask.sum())}; multiply each weight by its mask from your global_magnitude_masks.")
        for name, value in params.items():
            if name not in expected and not torch.equal(value.detach(), original[name]):
                _fail(f"{name} changed: prune the Linear/Conv2d weights only, not the biases.")
    _ok("your pruned copies match global magnitude pruning at 50 % and 90 %; the trained model is untouched")


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
            _fail(f"at step {step} (begin 0, end 100, initial 0.1, final 0.9) you gave {got:.4f}, "
                  f"expected {expected:.4f}: {hint}.")
    _ok("AGP sparsities match course_lib.sparse.schedules.agp_sparsity at 7 steps")


# ------------------------------------------------------------------ chapter 2

def check_l1_ranking(l1_filter_ranking: Callable[[nn.Conv2d], torch.Tensor]) -> None:
    """``l1_filter_ranking(conv)``: filter indices from the weakest (smallest L1 norm) to the strongest."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    with torch.no_grad():  # two filters on which L1 and L2 disagree: one large weight vs many small ones
        conv.weight[0] = 0.0
        conv.weight[0, 0, 0, 0] = 3.0
        conv.weight[1] = 0.5
    scores = selection.unit_scores(nn.Sequential(conv), ["0"], "l1")["0"]
    expected = torch.sort(scores, stable=True).indices
    got = torch.as_tensor(l1_filter_ranking(conv))
    if got.tolist() == torch.sort(conv.weight.detach().flatten(1).pow(2).sum(1), stable=True).indices.tolist() \
            and got.tolist() != expected.tolist():
        _fail("that is the L2 ranking; the L1 norm of a filter is the sum of |w| over its in_channels x k x k weights.")
    if got.tolist() != expected.tolist():
        _fail(f"you ranked the filters {got.tolist()}, expected {expected.tolist()} (weakest first). "
              "Sum |w| over dimensions 1, 2 and 3 of conv.weight, then sort ascending.")
    _ok("L1 filter ranking matches course_lib.pruning.unit_scores(..., 'l1')")


def check_remove_filters(remove_filters: Callable) -> None:
    """``remove_filters(conv1, bn, conv2, keep)``: a smaller conv1 -> bn -> conv2 block keeping filters ``keep``."""
    torch.manual_seed(0)
    conv1, bn, conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 5, 3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    keep = torch.tensor([0, 2, 3, 7])
    block = nn.Sequential(conv1, bn, nn.ReLU(), conv2).eval()
    masked = copy.deepcopy(block)
    unit = torch.zeros(8)
    unit[keep] = 1
    apply_masks(masked, {"0.weight": unit.reshape(-1, 1, 1, 1).expand_as(conv1.weight).clone(), "0.bias": unit,
                         "1.weight": unit.clone(), "1.bias": unit.clone()})
    new1, new_bn, new2 = remove_filters(copy.deepcopy(conv1), copy.deepcopy(bn), copy.deepcopy(conv2), keep)
    if new1.out_channels != 4 or new1.weight.shape[0] != 4:
        _fail(f"conv1 should keep 4 filters, it has {new1.weight.shape[0]}.")
    if new_bn.running_mean.numel() != 4 or new_bn.weight.numel() != 4:
        _fail(f"BatchNorm has {new_bn.weight.numel()} scales and {new_bn.running_mean.numel()} running means, "
              "expected 4 of each: slice weight, bias, running_mean AND running_var.")
    if new2.in_channels != 4 or new2.weight.shape[1] != 4:
        _fail(f"conv2 still reads {new2.weight.shape[1]} input channels, expected 4: remove the input kernels "
              "of the removed filters (dimension 1 of conv2.weight).")
    x = torch.randn(2, 3, 10, 10)
    small = nn.Sequential(new1, new_bn, nn.ReLU(), new2).eval()
    with torch.no_grad():
        diff = float((small(x) - masked(x)).abs().max())
    if diff > 1e-5:
        _fail(f"the smaller block's outputs differ from the masked block's by {diff:.3g}: did you keep the right "
              "filters, slice conv1's bias and the BatchNorm statistics with the same indices?")
    _ok("the shrunk block computes what the masked block computes (max difference < 1e-5)")


# ------------------------------------------------------------------ chapter 3

def check_imp_round(imp_round: Callable[[nn.Module, dict, float], nn.Module]) -> None:
    """``imp_round(trained, theta0, rate)``: prune ``rate`` of each layer's *surviving* weights by magnitude
    (output layer at half rate), rewind survivors to ``theta0``, return the masked, rewound model.

    Checked in round 1 (``trained`` has no masks) and in round 3 (``trained``
    carries the masks of two earlier rounds, as in a real IMP loop).
    """
    theta0 = build_model("lenet300", seed=1).state_dict()
    for round_ in (1, 3):
        trained = build_model("lenet300", seed=2)  # stands in for a trained network: different weights from theta0
        if round_ > 1:
            apply_masks(trained, lottery.imp_round_masks(trained, round_ - 1, rate=0.2))
        before = get_masks(trained)
        expected = lottery.imp_round_masks(trained, round_, rate=0.2)
        ticket = imp_round(copy.deepcopy(trained), copy.deepcopy(theta0), 0.2)
        got = get_masks(ticket)
        where = f"round {round_}" + (" (the trained network already carries two rounds of masks)" if round_ > 1 else "")
        if set(got) != set(expected):
            _fail(f"{where}: attach one mask per weight ({sorted(expected)}) with course_lib.masks.apply_masks; "
                  f"found {sorted(got)}.")
        output = list(expected)[-1]
        for name in expected:
            alive = before.get(name, torch.ones_like(expected[name]))
            if ((got[name] > 0) & (alive == 0)).any():
                _fail(f"{where}, {name}: a weight pruned in an earlier round is back. Keep the old zeros: rank only "
                      "the survivors.")
            kept, should = int(got[name].sum()), int(expected[name].sum())
            if kept != should:
                share = 0.1 if name == output else 0.2
                if kept == int(alive.sum()) - round(share * alive.numel()):
                    hint = "you pruned `rate` of ALL the layer's weights; prune `rate` of its SURVIVORS."
                elif name == output:
                    hint = "the output layer is pruned at HALF the rate."
                else:
                    hint = "prune `rate` of THIS layer's surviving weights."
                _fail(f"{where}, {name}: you kept {kept}, expected {should}. {hint}")
            if not torch.equal(got[name], expected[name]):
                _fail(f"{where}, {name}: right count, other weights: rank the TRAINED weights by |w| (not theta_0).")
            layer = ticket.get_submodule(name.removesuffix(".weight"))
            if not torch.allclose(layer.weight.detach(), theta0[name] * expected[name]):
                _fail(f"{where}, {name}: the surviving weights are not theta_0: rewind them (load theta0) before "
                      "masking.")
    _ok("IMP rounds 1 and 3: masks match course_lib.pruning.lottery.imp_round_masks, survivors rewound to theta_0")


def check_random_reinit(random_reinit: Callable[[dict, int], nn.Module]) -> None:
    """``random_reinit(masks, seed)``: a fresh LeNet-300-100 (seed ``seed``) carrying ``masks``."""
    masks = lottery.imp_round_masks(build_model("lenet300", seed=5), 2)
    model = random_reinit({k: v.clone() for k, v in masks.items()}, 123)
    got = get_masks(model)
    if set(got) != set(masks) or any(not torch.equal(got[k], masks[k]) for k in masks):
        _fail("the control must carry exactly the ticket's masks (attach them with apply_masks).")
    fresh = build_model("lenet300", seed=123)
    if not torch.equal(model.net.fc1.weight.detach(), fresh.net.fc1.weight.detach() * masks["net.fc1.weight"]):
        _fail("the surviving weights should be those of build_model('lenet300', seed=seed): a NEW initialization.")
    _ok("random re-init control: same masks, new initial weights")


# ------------------------------------------------------------------ chapter 4

def check_snip(snip_scores: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict]) -> None:
    """``snip_scores(model, x, y)``: ``|w * dL/dw|`` for every Linear/Conv2d weight, one batch."""
    model = build_model("lenet300", seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    names = list(selection.prunable_weights(model))
    expected = selection.taylor_scores(model, names, torch.utils.data.TensorDataset(x, y), num_batches=1, batch_size=64)
    got = snip_scores(copy.deepcopy(model), x, y)
    for name in names:
        if name not in got:
            _fail(f"no score for {name}: return {{weight name: score}} for {names}.")
        if (got[name] < 0).any():
            _fail(f"{name}: negative scores; SNIP takes the absolute value |w * g|.")
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
            _fail(f"{name}: scores differ from the reference ({hint}).")
    _ok("SNIP scores match course_lib.pruning.taylor_scores on one batch")


def check_synflow_scores(synflow_scores: Callable[[nn.Module], dict]) -> None:
    """``synflow_scores(model)``: ``|w * dR/dw|`` with R the summed output of the all-positive network on ones."""
    from course_lib.pruning import at_init  # here: at_init is only needed by this check

    model = build_model("lenet300", seed=0)
    expected = at_init.synflow_scores(model)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    got = synflow_scores(model)
    if any(not torch.equal(p.detach(), original[n]) for n, p in model.named_parameters()):
        _fail("your function changed the model's own weights: work on a copy (copy.deepcopy(model)).")
    names = list(expected)
    for name in names:
        if name not in got:
            _fail(f"no score for {name}: return {{weight name: score}} for {names}.")
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
            _fail(f"{name}: scores differ from course_lib.pruning.at_init.synflow_scores ({hint}).")
    _ok("SynFlow scores match course_lib.pruning.at_init.synflow_scores")


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
            _fail(f"at {sparsity:.1%} you kept {total} weights in all, expected {should}: after the last round the "
                  "sparsity must be the target.")
        one_shot = at_init.init_masks(model, "synflow-oneshot", sparsity)
        if all(torch.equal(got[n].float(), one_shot[n].float()) for n in got):
            _fail(f"at {sparsity:.1%} your masks are those of ONE round of SynFlow: prune a little, re-score the "
                  f"pruned network, {iterations} times.")
        empty = [n for n, m in got.items() if m.sum() == 0]
        if empty:
            _fail(f"at {sparsity:.1%} with {iterations} rounds, layers {empty} lost every weight: score each round "
                  "on the network with the previous round's masks applied.")
        agree = sum(int((got[n] * expected[n]).sum()) for n in expected) / max(should, 1)
        if agree < 0.99:
            _fail(f"at {sparsity:.1%}: only {agree:.1%} of the kept weights agree with the library's. Round k keeps "
                  f"(1 - sparsity) ** (k / iterations) of the weights, ranked globally by the scores of the network "
                  "with the previous round's masks applied.")
    _ok("iterative SynFlow keeps every layer at 99.9 % and agrees with course_lib.pruning.at_init.synflow_masks")


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
            _fail(f"for masks with kept counts {[int(m.sum()) for m in masks.values()]} you returned {got}, "
                  f"expected {expected} (layer names without '.weight').")
    _ok("collapsed layers found in 3 cases, as course_lib.pruning.collapsed_layers")


# ------------------------------------------------------------------ chapter 5

def check_scratch_b_epochs(scratch_b_epochs: Callable[[float, int, int, float | None], float]) -> None:
    """``scratch_b_epochs(dense_epochs, dense_macs, pruned_macs, cap)``: epochs x dense/pruned MACs, at most cap x."""
    cases = [(10, 4_000, 1_000, None), (10, 4_000, 1_000, 2.0), (8, 510_912, 142_560, None), (3, 1_000, 1_000, None),
             (5, 300, 200, 2.0)]
    for epochs, dense, pruned, cap in cases:
        expected = epochs * rethinking.scratch_b_factor(dense, pruned, cap)
        got = scratch_b_epochs(epochs, dense, pruned, cap)
        if not isinstance(got, (int, float)) or math.isnan(got):
            _fail(f"return a number of epochs; got {got!r}.")
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        if math.isclose(got, epochs * pruned / dense):
            _fail(f"dense {dense:,} MACs, pruned {pruned:,}: you returned {got:g} epochs, expected {expected:g}. "
                  "The ratio is upside down: the SMALLER network trains LONGER (dense MACs / pruned MACs).")
        if cap is not None and math.isclose(got, epochs * dense / pruned):
            _fail(f"with cap={cap} the factor {dense / pruned:g} must be capped: expected {expected:g} epochs, got {got:g}.")
        _fail(f"scratch_b_epochs({epochs}, {dense}, {pruned}, cap={cap}) returned {got:g}, expected {expected:g} "
              "(epochs x dense MACs / pruned MACs, at most cap x epochs).")
    _ok("Scratch-B's budget: epochs x dense MACs / pruned MACs, capped where asked")


def check_l1_hook(make_hook: Callable[[float], Hook]) -> None:
    """``make_hook(strength)`` returns a Hook whose ``after_backward`` adds ``strength * sign(gamma)`` to BN scales' grads."""
    _check_l1_hook_on(make_hook, build_model("vgg", seed=3), torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    mlp = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 8))
    _check_l1_hook_on(make_hook, mlp, torch.randn(8, 12, generator=torch.Generator().manual_seed(1)))
    _ok("the L1 subgradient lands on the BatchNorm scales only (BatchNorm2d and BatchNorm1d), as strength * sign(gamma)")


def _check_l1_hook_on(make_hook: Callable[[float], Hook], model: nn.Module, x: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # scales of both signs and many sizes, as after training: the subgradient of |gamma| is sign(gamma)
        for layer in model.modules():
            if isinstance(layer, selection.BATCHNORMS):
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 3 - 1.5)
    torch.nn.functional.cross_entropy(model(x), torch.arange(8)).backward()
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    values = {name: p.detach().clone() for name, p in model.named_parameters()}
    scale_names = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, selection.BATCHNORMS)}
    hook = make_hook(0.25)
    if not isinstance(hook, Hook):
        _fail(f"make_hook must return a course_lib.training.Hook (subclass it); got {type(hook).__name__}.")
    hook.after_backward(TrainContext(model=model, data=None, config=None, device=torch.device("cpu"),  # type: ignore[arg-type]
                                     history=None, steps_per_epoch=1, total_steps=1))  # type: ignore[arg-type]
    for name, p in model.named_parameters():
        if not torch.equal(p.detach(), values[name]):
            _fail(f"{name}: the hook changed the parameter itself; it must only add to its gradient (.grad).")
        diff = p.grad - before[name]
        is_scale = name in scale_names
        if not is_scale and diff.abs().max() > 0:
            _fail(f"{name} changed: only the BatchNorm SCALES (gamma, the bn*.weight parameters) get the L1 term; "
                  "leave convolutions, the classifier and the BN shifts (bias) alone.")
        if is_scale:
            expected = 0.25 * torch.sign(p.detach())
            if torch.allclose(diff, expected):
                continue
            if torch.allclose(diff, 0.25 * p.detach()):
                _fail(f"{name}: you added strength * gamma, the gradient of an L2 penalty; L1's is strength * sign(gamma).")
            if torch.allclose(diff, 0.25 * torch.ones_like(diff)):
                _fail(f"{name}: you added +strength everywhere; negative scales need -strength: use sign(gamma).")
            if not torch.allclose(diff, expected):
                _fail(f"{name}: the gradient changed by {diff[:3].tolist()}..., expected strength * sign(gamma) = "
                      f"{expected[:3].tolist()}... (BatchNorm1d layers count too)")


def check_keep_channels(keep_channels: Callable[[dict, float, int], dict]) -> None:
    """``keep_channels(scales, prune_fraction, min_channels)``: one global threshold on |gamma|, with a per-layer floor."""
    g = torch.Generator().manual_seed(0)
    scales = {"net.conv1": torch.rand(8, generator=g), "net.conv2": torch.rand(16, generator=g) * 0.05,
              "net.conv3": torch.rand(32, generator=g) + 0.2}
    # A layer with two strong channels among weak ones: the floor must top it up, not only refill an empty layer.
    topped = {**scales, "net.conv2": torch.cat([scales["net.conv2"][:14], torch.tensor([0.9, 0.95])])}
    for scales, fraction, floor in ((scales, 0.25, 1), (scales, 0.5, 2), (scales, 0.5, 4), (topped, 0.5, 4)):
        expected = slimming.slimming_keep(scales, slimming.global_threshold(scales, fraction), floor)
        got = keep_channels({k: v.clone() for k, v in scales.items()}, fraction, floor)
        if set(got) != set(expected):
            _fail(f"return one boolean tensor per layer, keyed like `scales` ({sorted(expected)}); got {sorted(got)}.")
        for layer in expected:
            kept, want = got[layer].bool(), expected[layer]
            if int(kept.sum()) < floor:
                _fail(f"{layer} keeps {int(kept.sum())} channel(s) at prune_fraction={fraction}: keep at least "
                      f"min_channels={floor} (the layer's largest |gamma|) even when the global threshold removes more.")
            local = int(round((1 - fraction) * len(scales[layer])))
            if int(kept.sum()) == local and int(want.sum()) != local:
                _fail(f"{layer} keeps {local} of {len(scales[layer])} channels: that is a per-layer (LOCAL) cut. Rank "
                      "all layers' |gamma| together and use ONE global threshold.")
            if not torch.equal(kept, want):
                _fail(f"{layer} at prune_fraction={fraction}, min_channels={floor}: you kept {int(kept.sum())} channels, "
                      f"expected {int(want.sum())} (|gamma| above the global threshold, or the layer's "
                      f"{floor} largest if fewer survive).")
    _ok("one global |gamma| threshold, with a floor of channels per layer")


# ------------------------------------------------------------------ chapter 6

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
        shapes = {name: tuple(layer.weight.shape) for name, layer in selection.prunable_weights(model).items()}
        expected = densities.layer_densities(model, sparsity, "erk")
        got = erk_densities(dict(shapes), sparsity)
        if not isinstance(got, dict) or set(got) != set(shapes):
            _fail(f"{what}: return a dict with one density per layer name {sorted(shapes)}; got {got!r}.")
        got = {n: float(v) for n, v in got.items()}
        if all(math.isclose(got[n], expected[n], rel_tol=1e-6, abs_tol=1e-9) for n in shapes):
            continue
        over = [n for n, d in got.items() if d > 1 + 1e-9]
        if over:
            _fail(f"{what}: {over} got a density above 1 ({max(got[n] for n in over):.3f}). A layer that ERK would "
                  "make denser than dense is made dense (1.0), and eps is solved again over the other layers.")
        n_weights = {n: math.prod(shape) for n, shape in shapes.items()}
        kept = sum(got[n] * n_weights[n] for n in shapes)
        budget = (1 - sparsity) * sum(n_weights.values())
        if not math.isclose(kept, budget, rel_tol=1e-4):
            _fail(f"{what}: your densities keep {kept:,.0f} weights, the budget is (1 - sparsity) x all weights = "
                  f"{budget:,.0f}. Choose eps so that sum(density_i * n_i) hits the budget.")
        er = densities.layer_densities(model, sparsity, "er")
        if any(len(shape) > 2 for shape in shapes.values()) and all(math.isclose(got[n], er[n], rel_tol=1e-6)
                                                                     for n in shapes):
            _fail(f"{what}: these are Erdős–Rényi densities. ERK counts the kernel too: "
                  "(n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w).")
        worst = max(shapes, key=lambda n: abs(got[n] - expected[n]))
        _fail(f"{what}: {worst} got density {got[worst]:.4f}, expected {expected[worst]:.4f} "
              f"(course_lib.sparse.densities.layer_densities). All: expected "
              f"{ {n: round(v, 4) for n, v in expected.items()} }.")
    _ok("ERK densities match course_lib.sparse.densities.layer_densities, including a layer capped at dense")


def check_drop_and_grow(drop_and_grow: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int],
                                                 tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``drop_and_grow(weight, mask, dense_grad, k)`` -> ``(new_mask, new_weight)``: one RigL update of one layer."""
    g = torch.Generator().manual_seed(6)
    cases = []
    for shape, density, k in (((6, 8), 0.5, 5), ((30, 40), 0.1, 36), ((4, 5), 0.25, 5)):
        weight = torch.randn(shape, generator=g)
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        mask[torch.randperm(weight.numel(), generator=g)[: round(density * weight.numel())]] = True
        cases.append((weight * mask.reshape(shape), mask.reshape(shape), torch.randn(shape, generator=g), k))
    # By hand: w = 0.1 is dropped, but its gradient is the largest, so it comes straight back (and keeps 0.1).
    cases.append((torch.tensor([[0.5, 0.1, 2.0, 0.0, 0.0, 0.0]]), torch.tensor([[True, True, True, False, False, False]]),
                  torch.tensor([[0.0, 9.0, 0.0, 0.3, 5.0, 0.1]]), 2))
    for weight, mask, grad, k in cases:
        shape = tuple(weight.shape)
        expected_mask, new = updaters.drop_and_grow(mask, weight.abs(), grad.abs(), k)
        got_mask, got_weight = drop_and_grow(weight.clone(), mask.clone(), grad.clone(), k)
        got_mask = torch.as_tensor(got_mask).bool()
        where = f"a {shape[0]}x{shape[1]} layer with {int(mask.sum())} active weights, k = {k}"
        if got_mask.shape != mask.shape or torch.as_tensor(got_weight).shape != weight.shape:
            _fail(f"{where}: return a mask and a weight of the layer's shape {tuple(shape)}.")
        if int(got_mask.sum()) != int(mask.sum()):
            _fail(f"{where}: your mask has {int(got_mask.sum())} active weights, it must keep exactly "
                  f"{int(mask.sum())}: drop k ACTIVE weights (inactive ones are 0: leave them out of the drop "
                  "ranking), then grow k.")
        smallest = torch.zeros(weight.numel(), dtype=torch.bool)
        smallest[torch.where(mask.flatten(), weight.abs().flatten(), torch.inf).argsort()[:k]] = True
        dropped = mask & ~got_mask
        if torch.any(dropped & ~smallest.reshape(shape)):
            _fail(f"{where}: you dropped weights with |w| {sorted(weight.abs()[dropped].tolist())[:3]}..., but only "
                  f"the k smallest |w| of the active weights may go ({sorted(weight.abs()[mask].tolist())[:3]}...).")
        if torch.equal(got_mask, mask):
            _fail(f"{where}: your update changed nothing - the weights you dropped came straight back. Grow by "
                  "|dense gradient|: by |w|, the just-dropped weights are the largest inactive ones.")
        if not torch.equal(got_mask, expected_mask):
            _fail(f"{where}: you grew the wrong weights. Grow the k largest |dense gradient| among the weights "
                  "inactive after the drop (a weight just dropped may be grown back).")
        got_weight = torch.as_tensor(got_weight)
        survivors = mask & got_mask
        if torch.any(got_weight[new] != 0):
            _fail(f"{where}: new connections must start at exactly zero.")
        if not torch.equal(got_weight[survivors], weight[survivors]):
            _fail(f"{where}: weights that stayed active must keep their values - including a weight dropped and "
                  "grown back in the same update: it is not a new connection.")
    _ok("drop and grow: same count, smallest survivors dropped, largest inactive gradients grown, new weights at 0")


def check_cosine_drop_fraction(cosine_drop_fraction: Callable[[int, float, int], float]) -> None:
    """``cosine_drop_fraction(step, alpha, end_step)``: alpha * (1 + cos(pi * t / T_end)) / 2, zero after T_end."""
    for alpha, end in ((0.3, 1000), (0.5, 120)):
        for step in (0, 1, end // 4, end // 2, end - 1, end, end + end // 2):
            expected = schedules.cosine_drop_fraction(step, alpha, 0, end)
            got = cosine_drop_fraction(step, alpha, end)
            try:
                got = float(got)
            except (TypeError, ValueError):
                _fail(f"cosine_drop_fraction({step}, {alpha}, {end}) must return a number, got {got!r}.")
            if math.isclose(got, expected, abs_tol=1e-9):
                continue
            if step == 0 and math.isclose(got, 2 * alpha):
                hint = "you forgot the division by 2: at t = 0 the fraction is alpha, not 2 alpha"
            elif step > end:
                hint = "after T_end nothing moves any more: clamp t / T_end to 1 (the cosine would rise again)"
            else:
                hint = "alpha * (1 + cos(pi * t / T_end)) / 2, with the alpha and T_end you are given"
            _fail(f"cosine_drop_fraction({step}, {alpha}, {end}) returned {got!r}, expected {expected:.5f}: {hint}.")
    _ok("cosine drop fraction matches course_lib.sparse.schedules.cosine_drop_fraction for two schedules")


# ------------------------------------------------------------------ chapter 7

def check_gumbel_top_k(gumbel_top_k: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]) -> None:
    """``gumbel_top_k(logits, k, generator)``: a k-hot sample per row, distributed as Gumbel-top-k."""
    g = torch.Generator().manual_seed(7)
    logits = torch.tensor([2.0, 1.0, 0.3, 0.0, -0.5])
    draws = 4000
    got = torch.as_tensor(gumbel_top_k(logits.repeat(draws, 1), 2, g)).float()
    if got.shape != (draws, 5):
        _fail(f"for logits of shape ({draws}, 5) return a mask of the same shape, got {tuple(got.shape)}.")
    if not torch.all((got == 0) | (got == 1)) or not torch.all(got.sum(1) == 2):
        _fail("every row must hold exactly k = 2 ones and zeros elsewhere (a k-hot mask).")
    frequency, exact = got.mean(0), sampler.inclusion_probabilities(logits, 2)
    if torch.all(got == got[0]):
        _fail("every row came out the same: add fresh Gumbel noise -log(-log(u)) to the logits for each row "
              "before taking the top k (without noise, top-k is deterministic).")
    z = (frequency - exact) / torch.sqrt(exact * (1 - exact) / draws)
    if z.abs().max() > 5:  # five standard errors: a correct sampler fails this about once in a million runs
        _fail(f"over {draws} samples the entries were kept with frequencies {[round(f, 3) for f in frequency.tolist()]}, "
              f"but Gumbel-top-k keeps them with probabilities {[round(p, 3) for p in exact.tolist()]}. "
              "Perturb with Gumbel noise, g = -log(-log(u)) for u uniform in (0, 1), not Gaussian or uniform noise.")
    _ok(f"k-hot rows, and inclusion frequencies within 5 standard errors of the exact probabilities ({draws} draws)")


def check_straight_through_top_k(straight_through_top_k: Callable[[torch.Tensor, int, float], torch.Tensor]) -> None:
    """``straight_through_top_k(perturbed, k, temperature)``: hard top-k forward, successive-softmax gradient backward."""
    g = torch.Generator().manual_seed(8)
    for k, temperature in ((3, 0.5), (1, 1.0), (4, 2.0)):
        perturbed = (2 * torch.randn(5, 9, generator=g, dtype=torch.float64)).requires_grad_()
        reference = perturbed.detach().clone().requires_grad_()
        weights = torch.randn(5, 9, generator=g, dtype=torch.float64)
        got = straight_through_top_k(perturbed, k, temperature)
        hard = sampler.top_k_mask(perturbed.detach(), k)
        if not torch.is_tensor(got) or got.shape != perturbed.shape:
            _fail(f"return a tensor of the input's shape {tuple(perturbed.shape)}.")
        if not torch.equal(got.detach(), hard):
            soft_like = torch.allclose(got.detach().double().sum(-1), torch.full((5,), float(k), dtype=torch.float64))
            _fail("the forward value must be exactly the hard top-k mask (0s and 1s)"
                  + (" - you returned the soft mask; add it as (soft - soft.detach())" if soft_like else "") + ".")
        if not got.requires_grad:
            _fail("no gradient reaches the logits: the hard mask has none, so add the soft mask's gradient with "
                  "hard + (soft - soft.detach()).")
        (got * weights).sum().backward()
        (sampler.relaxed_top_k(reference, k, temperature) * weights).sum().backward()
        if perturbed.grad is None or not torch.allclose(perturbed.grad, reference.grad, atol=1e-8):
            _fail(f"k = {k}, temperature {temperature}: the gradient differs from that of k successive softmaxes of "
                  "perturbed / temperature, where softmax j leaves out the entries the hard top-k picked before "
                  "it (the largest j), summed.")
    _ok("forward: exactly the hard top-k; backward: the successive-softmax relaxation's gradient")


def check_is_n_m(is_n_m: Callable[[torch.Tensor, int, int], bool]) -> None:
    """``is_n_m(mask, n, m)``: at most n non-zeros in every group of m consecutive weights of every row."""
    two_four = torch.tensor([[1, 0, 1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.float32)
    cases = [
        ("a 2:4 mask", two_four, 2, 4),
        ("half of each row kept, but 3 in one group of 4", torch.tensor([[1, 1, 1, 0, 0, 1, 0, 0.]]), 2, 4),
        ("2 per group, but groups misread as sliding windows", torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0.]]), 2, 4),
        ("a dense row", torch.ones(1, 8), 2, 4),
        ("a 1:4 mask of a conv weight (4, 2, 2, 2)", torch.eye(4).repeat(1, 2).reshape(4, 2, 2, 2), 1, 4),
        ("an empty mask", torch.zeros(3, 8), 2, 4),
    ]
    for what, mask, n, m in cases:
        expected = dpp_masks.is_n_m_sparse(mask, n, m)
        got = is_n_m(mask.clone(), n, m)
        if bool(got) != expected:
            hint = ("count the non-zeros of each group of m CONSECUTIVE weights, groups starting at the first weight "
                    "of the row (reshape each row to (-1, m)), not of the whole row or of sliding windows")
            _fail(f"{what}: you said {bool(got)}, expected {expected} for {n}:{m}. {hint}.")
    try:
        is_n_m(torch.ones(2, 6), 2, 4)
    except ValueError:
        pass
    else:
        _fail("a fan-in of 6 is not a multiple of m = 4: the pattern is undefined, raise a ValueError.")
    _ok("N:M checks agree with course_lib.dpp.masks.is_n_m_sparse, including rows of a convolution")


# ------------------------------------------------------------------ chapter 8: the design challenge

MAX_DENSITY = 0.05  # at most 5 % of LeNet-300-100's weights may be non-zero
DESIGN_TARGETS = {"quick": 78.0, "full": 83.5}  # the test accuracy (%) a design must reach, per profile


class TestSplitRefused(CheckFailed):
    """A design touched the test split, which is for the final report only."""


class RefusedSplit(TensorDataset):
    """Stands in for the test split while a design is built: reading it stops the check.

    Its length is allowed (the course's cache keys count every split's images); its images and labels are
    not. It guards against a mistake, not against a determined cheat, who could load the data again.
    """

    def __init__(self, size: int) -> None:  # no tensors: there is nothing to read
        self.size = size

    def __len__(self) -> int:
        return self.size

    def _refuse(self, *_: object) -> None:
        raise TestSplitRefused("Your design used the test split (data.test). Choose everything - sparsity, "
                               "method, epochs - on the validation split (data.val): the test split is for the "
                               "final report only, and the check measures it for you.")

    tensors = property(_refuse)  # type: ignore[assignment]
    __getitem__ = _refuse  # type: ignore[assignment]


def check_design_challenge(design: Callable[[DataSplits, int], nn.Module], profile: Profile | None = None,
                           seed: int = 0) -> float:
    """Score a design: ``design(data, seed)`` returns a pruned LeNet-300-100 built from ``data.train`` and ``data.val``.

    The design sees the capstone's data with the test split refused. Passing means: a LeNet-300-100, at
    most ``MAX_DENSITY`` of its weights non-zero, and test accuracy at least the profile's
    ``DESIGN_TARGETS``. Returns the test accuracy.
    """
    profile = profile or get_profile()
    data = dpp_comparison.dpp_splits(profile)  # the capstone's data
    model = design(replace(data, test=RefusedSplit(len(data.test))), seed)  # TestSplitRefused says what was wrong
    reference = costs.layer_costs(build_model("lenet300"))
    table = costs.layer_costs(model) if isinstance(model, LeNet300100) else None
    if table is None or table.weights.tolist() != reference.weights.tolist():
        _fail(f"Return the LeNet-300-100 your design pruned, with its 784-300-100-10 layers (masked or with zeros), "
              f"not {type(model).__name__} with other shapes: the 5 % counts LeNet-300-100's "
              f"{int(reference.weights.sum()):,} weights.")
    density = float(table.nonzero.sum() / reference.weights.sum())
    if density > MAX_DENSITY:
        _fail(f"{density:.2%} of the weights are non-zero; the challenge allows {MAX_DENSITY:.0%}. Prune harder "
              "(count every layer's weights: a layer you leave dense counts in full).")
    accuracy = evaluate(model, data.test)
    target = DESIGN_TARGETS[profile.name]
    if accuracy < target:
        _fail(f"Test accuracy {accuracy:.2f} % with {density:.2%} of the weights: below the target of {target:.1f} %. "
              "Compare designs on data.val: how the layers share the weights (global ranking, or a dense "
              "classifier), when to prune (after training, gradually) and how long to retrain.")
    _ok(f"design accepted: {accuracy:.2f} % test accuracy (target {target:.1f} %) with {density:.2%} of the weights")
    return accuracy
