"""The exercise checks: a typical mistake fails with a message that names it."""

import contextlib
import re
import statistics
import time

import pytest
import torch
from torch import nn

from course_lib import checks
from course_lib.checks import ch04_at_init
from course_lib.training import Hook
from course_lib.masks import apply_masks
from course_lib.models import build_model


def _fails_with(check, student, *fragments):
    with pytest.raises(checks.CheckFailed) as error:
        check(*student) if isinstance(student, tuple) else check(student)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_macs_on_the_input_size_is_caught():
    linear = lambda layer: layer.in_features * layer.out_features
    conv_on_input = lambda layer, hw: layer.out_channels * layer.in_channels * 9 * hw[0] * hw[1]
    _fails_with(checks.check_macs, (linear, conv_on_input), "OUTPUT position")
    _fails_with(checks.check_macs, (lambda layer: layer.in_features * layer.out_features + layer.out_features,
                                    conv_on_input), "biases are additions")


def test_latency_with_warmup_timed_or_mean_is_caught():
    def timed_everything(fn, warmup, repeats):
        times = []
        for _ in range(warmup + repeats):
            start = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - start))
        return statistics.mean(times)
    _fails_with(checks.check_median_latency, timed_everything, "warm-up")


def test_ranking_signed_weights_is_caught():
    def by_value(weight, sparsity):
        k = round(sparsity * weight.numel())
        mask = torch.ones(weight.numel())
        mask[torch.sort(weight.flatten(), stable=True).indices[:k]] = 0
        return mask.reshape(weight.shape)
    _fails_with(checks.check_local_magnitude_mask, by_value, "ranking w instead of |w|")


def test_a_local_answer_to_the_global_task_is_caught():
    def local(weights, sparsity):
        out = {}
        for name, w in weights.items():
            k = round(sparsity * w.numel())
            mask = torch.ones(w.numel())
            mask[torch.sort(w.abs().flatten(), stable=True).indices[:k]] = 0
            out[name] = mask.reshape(w.shape)
        return out
    _fails_with(checks.check_global_magnitude_masks, local, "you kept", "LOCAL count")


def test_a_linear_schedule_is_caught():
    _fails_with(checks.check_agp, lambda t, f, b, e, i: i + (f - i) * min(max((t - b) / (e - b), 0), 1), "expected")


def test_l2_instead_of_l1_is_caught():
    _fails_with(checks.check_l1_ranking, lambda conv: torch.sort(conv.weight.detach().pow(2).sum((1, 2, 3))).indices,
                "L2 ranking")


def test_forgetting_the_running_statistics_is_caught():
    def forgets_stats(conv1, bn, conv2, keep):
        new1 = nn.Conv2d(conv1.in_channels, len(keep), 3, padding=1)
        new2 = nn.Conv2d(len(keep), conv2.out_channels, 3)
        with torch.no_grad():
            new1.weight.copy_(conv1.weight[keep])
            new1.bias.copy_(conv1.bias[keep])
            new2.weight.copy_(conv2.weight[:, keep])
            new2.bias.copy_(conv2.bias)
        return new1, bn, new2
    _fails_with(checks.check_remove_filters, forgets_stats, "running_mean")


def test_pruning_the_output_layer_at_full_rate_is_caught():
    def full_rate(trained, theta0, rate):
        from course_lib.pruning.selection import unstructured_masks
        model = build_model("lenet300")
        model.load_state_dict(theta0)
        apply_masks(model, unstructured_masks(trained, rate, scope="local"))
        return model
    _fails_with(checks.check_imp_round, full_rate, "HALF the rate")


def test_reinit_that_keeps_theta0_is_caught():
    def same_init(masks, seed):
        model = build_model("lenet300", seed=0)
        apply_masks(model, masks)
        return model
    _fails_with(checks.check_random_reinit, same_init, "NEW initialization")


def test_signed_snip_is_caught():
    def signed(model, x, y):
        nn.functional.cross_entropy(model(x), y).backward()
        return {f"{n}.weight": (m.weight * m.weight.grad).detach() for n, m in model.named_modules()
                if isinstance(m, nn.Linear)}
    _fails_with(checks.check_snip, signed, "negative")


def test_wrong_collapse_detection_is_caught():
    _fails_with(checks.check_collapse, lambda masks: [n for n, m in masks.items() if m.sum() == 0], "expected")


# ------------------------------------------------------------------ chapter 5

def _scratch_b(config, train_size, dense, pruned, cap=None, round_epochs=False, upside_down=False, floor=False,
               keep_recipe=True):
    """A student's Scratch-B budget with switchable slips."""
    import math
    from dataclasses import replace
    from course_lib.training import steps_per_epoch
    factor = (pruned / dense if upside_down else dense / pruned)
    factor = min(factor, cap) if cap else factor
    per_epoch = steps_per_epoch(train_size, config.batch_size)
    steps = round(config.epochs * factor) * per_epoch if round_epochs else round(factor * config.total_steps(train_size))
    epochs = (steps // per_epoch) if floor else math.ceil(steps / per_epoch)
    return replace(config, steps=steps, epochs=epochs, **({} if keep_recipe else {"lr": config.lr * 2}))


def test_scratch_b_mistakes_are_named():
    from dataclasses import replace
    checks.check_scratch_b_config(_scratch_b)
    _fails_with(checks.check_scratch_b_config, lambda *a: _scratch_b(*a, round_epochs=True), "rounded the EPOCHS")
    _fails_with(checks.check_scratch_b_config, lambda *a: _scratch_b(*a, upside_down=True), "upside down")
    _fails_with(checks.check_scratch_b_config, lambda *a: _scratch_b(*a, floor=True), "rounded UP")
    _fails_with(checks.check_scratch_b_config, lambda *a: _scratch_b(*a, keep_recipe=False), "keep the rest")
    _fails_with(checks.check_scratch_b_config, lambda c, *a: replace(c, epochs=round(c.epochs * a[1] / a[2])),
                "set `steps`")
    _fails_with(checks.check_scratch_b_config, lambda *a: 3.5, "return a TrainConfig")


def _proximal(after_step=None, after_backward=None):
    class Student(Hook):
        def __init__(self, strength):
            self.strength = strength

        def after_step(self, ctx):
            if after_step is not None:
                with torch.no_grad():
                    after_step(self, ctx)

        def after_backward(self, ctx):
            if after_backward is not None:
                with torch.no_grad():
                    after_backward(self, ctx)

    return Student


def _scales_and_rates(ctx, kinds=(nn.BatchNorm1d, nn.BatchNorm2d)):
    """(gamma, the learning rate of its group) for every BatchNorm scale: what a right answer has to find."""
    ids = {id(m.weight) for m in ctx.model.modules() if isinstance(m, kinds)}
    return [(p, group["lr"]) for group in ctx.optimizer.param_groups for p in group["params"] if id(p) in ids]


def test_l1_proximal_mistakes_are_named():
    def right(self, ctx):
        for gamma, lr in _scales_and_rates(ctx):
            gamma.copy_(torch.sign(gamma) * torch.clamp(gamma.abs() - lr * self.strength, min=0))
    checks.check_l1_proximal(_proximal(right))

    def subgradient(self, ctx):  # the lecture's method, in the phase before the step
        for gamma, _ in _scales_and_rates(ctx):
            gamma.grad += self.strength * torch.sign(gamma)
    _fails_with(checks.check_l1_proximal, _proximal(after_backward=subgradient), "AFTER optimizer.step()")

    def no_rate(self, ctx):
        for gamma, _ in _scales_and_rates(ctx):
            gamma.copy_(torch.sign(gamma) * torch.clamp(gamma.abs() - self.strength, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(no_rate), "step size x strength")

    def config_rate(self, ctx):
        for gamma, _ in _scales_and_rates(ctx):
            gamma.copy_(torch.sign(gamma) * torch.clamp(gamma.abs() - ctx.config.lr * self.strength, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(config_rate), "ctx.optimizer.param_groups")

    def first_group(self, ctx):
        lr = ctx.optimizer.param_groups[0]["lr"]
        for gamma, _ in _scales_and_rates(ctx):
            gamma.copy_(torch.sign(gamma) * torch.clamp(gamma.abs() - lr * self.strength, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(first_group), "another parameter group")

    def no_clamp(self, ctx):
        for gamma, lr in _scales_and_rates(ctx):
            gamma -= lr * self.strength * torch.sign(gamma)
    _fails_with(checks.check_l1_proximal, _proximal(no_clamp), "crossed zero")

    def only_2d(self, ctx):
        for gamma, lr in _scales_and_rates(ctx, kinds=(nn.BatchNorm2d,)):
            gamma.copy_(torch.sign(gamma) * torch.clamp(gamma.abs() - lr * self.strength, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(only_2d), "BatchNorm1d")

    def shifts_too(self, ctx):
        right(self, ctx)
        for m in ctx.model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.bias.copy_(torch.sign(m.bias) * torch.clamp(m.bias.abs() - 0.1, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(shifts_too), "SHIFT")

    def everything(self, ctx):
        for group in ctx.optimizer.param_groups:
            for p in group["params"]:
                p.copy_(torch.sign(p) * torch.clamp(p.abs() - group["lr"] * self.strength, min=0))
    _fails_with(checks.check_l1_proximal, _proximal(everything), "only the BatchNorm SCALES")

    def zeroes_gradients_too(self, ctx):
        right(self, ctx)
        for gamma, _ in _scales_and_rates(ctx):
            gamma.grad.zero_()
    _fails_with(checks.check_l1_proximal, _proximal(zeroes_gradients_too), "changed a gradient")
    _fails_with(checks.check_l1_proximal, lambda strength: object(), "Hook")


def test_keep_channels_mistakes_are_named():
    from course_lib.pruning import slimming

    checks.check_keep_channels(lambda s, f, m: slimming.slimming_keep(s, slimming.global_threshold(s, f), m))
    no_floor = lambda s, f, m: {k: v > slimming.global_threshold(s, f) for k, v in s.items()}
    _fails_with(checks.check_keep_channels, no_floor, "keep at least")

    def floor_only_when_empty(s, f, m):
        keep = {k: v > slimming.global_threshold(s, f) for k, v in s.items()}
        for k, v in s.items():
            if not keep[k].any():
                keep[k][torch.argsort(-v, stable=True)[:m]] = True
        return keep
    _fails_with(checks.check_keep_channels, floor_only_when_empty, "keep at least")

    def local(s, f, m):
        keep = {}
        for k, v in s.items():
            alive = torch.zeros(len(v), dtype=torch.bool)
            alive[torch.argsort(-v)[: round((1 - f) * len(v))]] = True
            keep[k] = alive
        return keep
    _fails_with(checks.check_keep_channels, local, "LOCAL")

    def first_channels(s, f, m):  # the right count per layer, but the first channels instead of the largest |gamma|
        right = slimming.slimming_keep(s, slimming.global_threshold(s, f), m)
        return {k: torch.arange(len(v)) < int(right[k].sum()) for k, v in s.items()}
    _fails_with(checks.check_keep_channels, first_channels, "not the right ones")

    def wraps_at_zero(s, f, m):  # threshold = sorted[k - 1] without a guard: k = 0 takes the LARGEST scale
        everything = torch.sort(torch.cat(list(s.values()))).values
        threshold = everything[round(f * len(everything)) - 1]
        return slimming.slimming_keep(s, float(threshold), m)
    _fails_with(checks.check_keep_channels, wraps_at_zero, "0 channels go")


# ------------------------------------------------------------------ chapter 6

def _erk(shapes, sparsity, kernel=True, cap=True):
    """A student's ERK with switchable slips: ER instead of ERK, no capping at 1."""
    import math
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s if kernel else s[:2]) / math.prod(s if kernel else s[:2]) for n, s in shapes.items()}
    budget, dense = (1 - sparsity) * sum(numel.values()), set()
    while True:
        eps = (budget - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in shapes if n not in dense)
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not over or not cap:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= over


def test_erk_mistakes_are_named():
    checks.check_erk_densities(_erk)  # the reference passes
    _fails_with(checks.check_erk_densities, lambda sh, s: _erk(sh, s, cap=False), "above 1", "solved again")
    _fails_with(checks.check_erk_densities, lambda sh, s: _erk(sh, s, kernel=False), "Erdős–Rényi densities")
    _fails_with(checks.check_erk_densities, lambda sh, s: {n: 1 - s for n in sh}, "expected")


def _rigl_step(weight, mask, grad, k, rank_inactive=False, grow_by_weight=False, zero_new=True,
               exclude_dropped=False, zero_regrown=False):
    """A student's drop-and-grow with switchable slips."""
    flat_w, flat_m, flat_g = weight.flatten().abs(), mask.flatten().clone(), grad.flatten().abs()
    drop_scores = flat_w if rank_inactive else torch.where(flat_m, flat_w, torch.inf)
    flat_m[torch.argsort(drop_scores, stable=True)[:k]] = False
    grow_scores = (flat_w if grow_by_weight else flat_g).clone()
    grow_scores[flat_m] = -torch.inf
    if exclude_dropped:
        grow_scores[mask.flatten()] = -torch.inf
    grown = torch.argsort(grow_scores, descending=True, stable=True)[:k]
    flat_m[grown] = True
    new_weight = weight.clone().flatten()
    if zero_regrown:
        new_weight[grown] = 0.0
    elif zero_new:
        new_weight[grown[~mask.flatten()[grown]]] = 0.0
    elif zero_new is None:  # forgets the reset: a grown connection keeps what the stored weight held
        pass
    else:
        new_weight[grown[~mask.flatten()[grown]]] = 0.01
    return flat_m.reshape(mask.shape), new_weight.reshape(weight.shape)


def test_drop_and_grow_mistakes_are_named():
    checks.check_drop_and_grow(_rigl_step)
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, rank_inactive=True))
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, grow_by_weight=True),
                "dense gradient")
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, zero_new=False), "zero")
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, zero_new=None), "stale value")
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, exclude_dropped=True),
                "may be grown back")
    _fails_with(checks.check_drop_and_grow, lambda w, m, g, k: _rigl_step(w, m, g, k, zero_regrown=True),
                "not a new connection")


def _my_rigl(capture=True, reset=True, skip=True, call_library=False, library_capture=False):
    """A student's RigL update step (task 4) with switchable slips, on the library's drop_and_grow."""
    from course_lib.masks import mask_layers
    from course_lib.sparse import updaters

    class MyRigL(updaters.RigL):
        def before_forward(self, ctx):
            if library_capture:
                return super().before_forward(ctx)
            if capture and self.is_due(ctx.step + 1):
                for mask in mask_layers(ctx.model).values():
                    mask.capture_dense_grad = True

        @torch.no_grad()
        def after_backward(self, ctx):
            if call_library:
                return super().after_backward(ctx)
            if not self.is_due(ctx.step + 1):
                return
            fraction = self.amount(ctx.step + 1)
            for name, mask in mask_layers(ctx.model).items():
                weight = ctx.model.get_submodule(name.rpartition(".")[0]).parametrizations.weight.original
                active = mask.mask.bool()
                grad = mask.dense_grad if capture else weight.grad
                new_mask, new = updaters.drop_and_grow(active, weight.abs(), grad.abs(), round(fraction * int(active.sum())))
                weight[new] = 0.0
                if reset:
                    for buffer in ctx.optimizer.state[weight].values():
                        if torch.is_tensor(buffer) and buffer.shape == weight.shape:
                            buffer[new] = 0.0
                mask.mask.copy_(new_mask.to(mask.mask.dtype))
                mask.capture_dense_grad, mask.dense_grad = False, None
            ctx.skip_step = skip

    return MyRigL


def test_rigl_update_step_slips_are_named():
    checks.check_rigl_update(_my_rigl())
    _fails_with(checks.check_rigl_update, _my_rigl(capture=False), "capture_dense_grad")
    _fails_with(checks.check_rigl_update, _my_rigl(reset=False), "optimizer state")
    _fails_with(checks.check_rigl_update, _my_rigl(skip=False), "skip_step")
    _fails_with(checks.check_rigl_update, _my_rigl(call_library=True), "write the update step yourself")
    _fails_with(checks.check_rigl_update, _my_rigl(library_capture=True), "write the update step yourself")
    _fails_with(checks.check_rigl_update, lambda *a: None, "subclass of updaters.RigL")


def test_drop_and_grow_ties_go_to_the_lower_index():
    def highest_index_first(weight, mask, grad, k):
        active = mask.flatten().bool()
        drop = torch.where(active, weight.abs().flatten(), torch.inf)
        kept = active.clone()
        kept[sorted(range(len(drop)), key=lambda i: (drop[i].item(), -i))[:k]] = False
        grow = torch.where(kept, -torch.inf, grad.abs().flatten())
        new_mask = kept.clone()
        new_mask[sorted(range(len(grow)), key=lambda i: (-grow[i].item(), -i))[:k]] = True
        new_weight = weight.clone().flatten()
        new_weight[new_mask & ~active] = 0.0
        return new_mask.reshape(mask.shape), new_weight.reshape(weight.shape)
    _fails_with(checks.check_drop_and_grow, highest_index_first, "LOWER index")


def test_cosine_drop_fraction_mistakes_are_named():
    import math
    good = lambda t, a, end: a * (1 + math.cos(math.pi * min(t / end, 1.0))) / 2
    checks.check_cosine_drop_fraction(good)
    _fails_with(checks.check_cosine_drop_fraction, lambda t, a, end: a * (1 + math.cos(math.pi * min(t / end, 1))),
                "division by 2")
    _fails_with(checks.check_cosine_drop_fraction, lambda t, a, end: a * (1 + math.cos(math.pi * t / end)) / 2,
                "clamp")
    _fails_with(checks.check_cosine_drop_fraction,  # the numbers of the first schedule typed in
                lambda t, a, end: 0.3 * (1 + math.cos(math.pi * min(t / 1000, 1))) / 2, "T_end you are given")
    _fails_with(checks.check_cosine_drop_fraction,  # pi typed as 3.1416: close, and still not the schedule
                lambda t, a, end: a * (1 + math.cos(3.1416 * min(t / end, 1.0))) / 2, "off by")


# ------------------------------------------------------------------ chapter 7

def _sampler(noise="gumbel"):
    def gumbel_top_k(logits, k, generator):
        u = torch.rand(logits.shape, generator=generator).clamp(1e-12, 1 - 1e-7)
        g = {"gumbel": -torch.log(-torch.log(u)), "none": torch.zeros_like(u),
             "gauss": torch.randn(logits.shape, generator=generator), "uniform": 100 * u}[noise]
        return torch.zeros_like(logits).scatter(-1, (logits + g).topk(k, dim=-1).indices, 1.0)
    return gumbel_top_k


def test_gumbel_top_k_mistakes_are_caught_and_a_right_sampler_passes_on_many_seeds():
    for _ in range(3):
        checks.check_gumbel_top_k(_sampler())
    _fails_with(checks.check_gumbel_top_k, _sampler("none"), "fresh Gumbel noise")
    _fails_with(checks.check_gumbel_top_k, _sampler("gauss"), "not Gaussian")
    _fails_with(checks.check_gumbel_top_k, _sampler("uniform"), "frequencies")

    def global_rng(logits, k, generator):  # right distribution, but the generator is ignored
        u = torch.rand(logits.shape).clamp(1e-12, 1 - 1e-7)
        return torch.zeros_like(logits).scatter(-1, (logits - torch.log(-torch.log(u))).topk(k, dim=-1).indices, 1.0)
    _fails_with(checks.check_gumbel_top_k, global_rng, "generator")


def _soft_top_k(mode="right"):
    def straight_through_soft_top_k(perturbed, k, temperature):
        hard = torch.zeros_like(perturbed).scatter(-1, perturbed.detach().topk(k, dim=-1).indices, 1.0)
        keys, soft = perturbed, torch.zeros_like(perturbed)
        for _ in range(k):
            a = torch.softmax(keys / temperature, dim=-1)
            soft = soft + a
            left = 1 - a if mode == "no clamp" else (1 - a).clamp(min=1e-12)
            if mode == "scaled keys":
                keys = keys + temperature * torch.log(left)
            elif mode != "no update":
                keys = keys + torch.log(left)
        return {"soft": soft, "hard": hard}.get(mode, hard + (soft - soft.detach()))
    return straight_through_soft_top_k


def test_soft_top_k_mistakes_are_named():
    from course_lib.dpp import sampler
    checks.check_soft_top_k(_soft_top_k())
    _fails_with(checks.check_soft_top_k, _soft_top_k("soft"), "soft mask")
    _fails_with(checks.check_soft_top_k, _soft_top_k("hard"), "no gradient")
    _fails_with(checks.check_soft_top_k, _soft_top_k("no update"), "all k softmaxes were the same")
    _fails_with(checks.check_soft_top_k, _soft_top_k("scaled keys"), "to the keys themselves")
    _fails_with(checks.check_soft_top_k, _soft_top_k("no clamp"), "Clamp")
    def library(perturbed, k, temperature):  # the hard leave-out of chapter 7
        soft = sampler.relaxed_top_k(perturbed, k, temperature)
        return sampler.top_k_mask(perturbed.detach(), k).to(soft.dtype) + (soft - soft.detach())
    _fails_with(checks.check_soft_top_k, library, "chapter 7's relaxation")


def test_n_m_mistakes_are_named():
    def right(mask, n, m):
        rows = mask.reshape(mask.shape[0], -1)
        if rows.shape[1] % m:
            raise ValueError("not a multiple")
        return bool(((rows != 0).reshape(rows.shape[0], -1, m).sum(-1) <= n).all())

    def whole_row(mask, n, m):
        rows = mask.reshape(mask.shape[0], -1)
        return bool(((rows != 0).sum(1) <= n * rows.shape[1] // m).all())

    def sliding(mask, n, m):
        rows = (mask.reshape(mask.shape[0], -1) != 0).float()
        return bool((rows.unfold(1, m, 1).sum(-1) <= n).all())

    def exactly_n(mask, n, m):
        rows = mask.reshape(mask.shape[0], -1)
        if rows.shape[1] % m:
            raise ValueError("not a multiple")
        return bool(((rows != 0).reshape(rows.shape[0], -1, m).sum(-1) == n).all())

    checks.check_is_n_m(right)
    _fails_with(checks.check_is_n_m, exactly_n, "AT MOST")
    _fails_with(checks.check_is_n_m, whole_row, "CONSECUTIVE")
    _fails_with(checks.check_is_n_m, sliding, "sliding windows")
    never_raises = lambda mask, n, m: right(mask, n, m) if mask.reshape(mask.shape[0], -1).shape[1] % m == 0 else True
    _fails_with(checks.check_is_n_m, never_raises, "ValueError")


def test_the_design_challenge_refuses_the_test_split_and_names_what_failed():
    from course_lib.models import build_model
    from course_lib.profiles import get_profile
    from course_lib.training import evaluate
    quick = get_profile("quick")

    def peeks(data, seed):
        model = build_model("lenet300", seed=seed)
        evaluate(model, data.test)
        return model

    with pytest.raises(checks.TestSplitRefused, match="validation split"):
        checks.check_design_challenge(peeks, quick)
    with pytest.raises(checks.CheckFailed, match="non-zero"):
        checks.check_design_challenge(lambda data, seed: build_model("lenet300", seed=seed), quick)
    with pytest.raises(checks.CheckFailed, match="784-300-100-10"):
        checks.check_design_challenge(lambda data, seed: build_model("vgg", seed=seed), quick)
    from course_lib.models import LeNet300100
    with pytest.raises(checks.CheckFailed, match="784-300-100-10"):  # a wider net would make 5 % mean more weights
        checks.check_design_challenge(lambda data, seed: LeNet300100(hidden=(2000, 1000)), quick)


# ---- the deeper exercises of chapters 0, 1, 3 and 4: each classic mistake gets its own diagnosis

def test_break_even_as_density_is_caught():
    _fails_with(checks.check_break_even, lambda value, index: value / (value + index), "DENSITY")


def test_linear_agp_is_caught_without_giving_the_formula_away():
    def linear(step, final, begin, end, initial=0.0):
        progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
        return initial + (final - initial) * progress
    _fails_with(checks.check_agp, linear, "straight line")


def test_pruning_the_trained_model_in_place_is_caught():
    model = build_model("lenet300", seed=0)

    def in_place(m, sparsity):
        with torch.no_grad():
            for layer in (m.net.fc1, m.net.fc2, m.net.fc3):
                layer.weight[layer.weight.abs() < layer.weight.abs().quantile(sparsity)] = 0
        return m
    _fails_with(checks.check_prune_trained, (in_place, model), "prune a copy")


def _imp_round(rate_of_all: bool = False, revive: bool = False):
    """A student's IMP round with one of two classic mistakes."""
    from course_lib.costs import prunable_layers
    from course_lib.masks import get_masks

    def imp_round(trained, theta0, rate):
        old = get_masks(trained)
        layers = prunable_layers(trained)
        masks = {}
        for name, layer in layers.items():
            alive = old.get(f"{name}.weight", torch.ones_like(layer.weight)).flatten()
            scores = layer.weight.detach().abs().flatten().clone()
            if not revive:
                scores[alive == 0] = -float("inf")
            share = rate / 2 if name == list(layers)[-1] else rate
            dead = 0 if revive else int((alive == 0).sum())
            k = round(share * (alive.numel() if rate_of_all else alive.numel() - dead))
            keep = torch.ones(alive.numel())
            keep[torch.sort(scores, stable=True).indices[:dead + k]] = 0.0
            masks[f"{name}.weight"] = keep.reshape(layer.weight.shape)
        ticket = build_model("lenet300")
        ticket.load_state_dict(theta0)
        apply_masks(ticket, masks)
        return ticket
    return imp_round


def test_imp_pruning_a_share_of_all_weights_is_caught_in_a_later_round():
    _fails_with(checks.check_imp_round, _imp_round(rate_of_all=True), "round 3", "SURVIVORS")


def test_imp_reviving_pruned_weights_is_caught():
    _fails_with(checks.check_imp_round, _imp_round(revive=True), "round 3", "is back")


def test_snip_with_a_summed_loss_is_caught():
    def summed(model, x, y):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
        return {f"{n}.weight": (m.weight * m.weight.grad).abs().detach()
                for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    _fails_with(checks.check_snip, summed, "batch size", "MEAN")


def test_snip_without_the_weight_is_caught():
    def gradient_only(model, x, y):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        return {f"{n}.weight": m.weight.grad.abs().detach()
                for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    _fails_with(checks.check_snip, gradient_only, "multiply by the weight")


def _synflow(positive: bool = True, ones: bool = True):
    """A student's SynFlow score with one of the two classic mistakes (or none)."""
    return lambda model: ch04_at_init._synflow_variant(model, positive=positive, ones=ones)


def test_synflow_on_signed_parameters_or_on_data_is_caught():
    _fails_with(checks.check_synflow_scores, _synflow(positive=False), "absolute value")
    _fails_with(checks.check_synflow_scores, _synflow(ones=False), "all ones")


def test_synflow_in_one_round_is_caught():
    from course_lib.pruning import selection

    def one_round(model, sparsity, iterations):
        return selection.masks_from_scores(model, _synflow()(model), sparsity, scope="global")
    _fails_with(checks.check_iterative_synflow, one_round, "ONE round")


def _one_epoch_then_cut(calls: list):
    """A quick design: one dense epoch, then 96 % of every hidden weight cut by magnitude (no fine-tuning)."""
    from course_lib.masks import apply_masks
    from course_lib.models import LENET_CLASSIFIER
    from course_lib.pruning.procedures import magnitude
    from course_lib.training import TrainConfig, train

    def design(data, seed):
        calls.append(seed)
        model = build_model("lenet300", seed=seed)
        train(model, data, TrainConfig(epochs=1, seed=seed), progress=False)
        apply_masks(model, magnitude("global", exclude=LENET_CLASSIFIER)(model, 0.955))
        return model
    return design


def test_try_design_reports_validation_and_the_training_cost_it_observed(monkeypatch, tmp_path):
    from course_lib.profiles import get_profile
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    result = checks.try_design(_one_epoch_then_cut([]), seed=0, profile=get_profile("quick"))
    assert 0 < result["val_acc"] <= 100 and result["density"] <= checks.MAX_DENSITY
    assert result["train_flops"] == pytest.approx(1 / 3, rel=1e-6)  # one dense epoch of the capstone's three


def test_an_unchanged_design_is_not_graded_twice_and_says_so(monkeypatch, tmp_path, capsys):
    from course_lib.profiles import get_profile
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    from course_lib.checks import ch08_design_challenge
    monkeypatch.setattr(ch08_design_challenge, "design_target", lambda profile, progress: _TARGET)  # no capstone runs
    calls: list = []
    design = _one_epoch_then_cut(calls)
    quick = get_profile("quick")
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(checks.check_design_challenge(design, quick))
        except checks.CheckFailed as failure:  # one epoch and no fine-tuning may stay below the target
            outcomes.append(str(failure))
    assert calls == quick.seeds()  # built once per seed, in the first grading only
    assert outcomes[0] == outcomes[1]
    out = capsys.readouterr().out
    assert out.count("graded design #1") == 2 and "graded before, unchanged" in out
    # the course's code changed: the recorded result may no longer be what the design gives, so it is graded anew
    monkeypatch.setattr(ch08_design_challenge, "code_fingerprint", lambda *modules: "other code")
    with contextlib.suppress(checks.CheckFailed):
        checks.check_design_challenge(design, quick)
    assert calls == quick.seeds() * 2 and "graded design #2" in capsys.readouterr().out


_TARGET = {"method": "AGP", "mean": 76.0, "std": 0.5, "target": 75.5, "train_flops": 0.9, "seeds": 2,
           "profile": "quick"}


def test_the_design_target_is_the_best_capstone_method_at_95_percent_minus_its_spread(monkeypatch):
    import pandas as pd
    from course_lib.chapters import ch08_capstone
    from course_lib.profiles import get_profile
    asked = {}

    def results(profile, family, progress, sparsities):
        asked.update(family=family, sparsities=sparsities)
        return pd.DataFrame({"method": ["AGP", "AGP", "SNIP", "SNIP"], "test_acc": [77.0, 75.0, 76.4, 76.6],
                             "train_flops": [0.8, 0.8, 0.3, 0.3]})
    monkeypatch.setattr(ch08_capstone, "results", results)
    target = checks.design_target(get_profile("quick"), progress=False)
    assert asked == {"family": "unstructured", "sparsities": [checks.TARGET_SPARSITY]}
    # AGP's mean (76.0) is below SNIP's (76.5): the best mean sets the bar, minus its own std
    assert target["method"] == "SNIP" and target["target"] == pytest.approx(76.5 - 0.1414, abs=1e-3)
    assert "SNIP" in checks.describe_target(target) and "76.36" in checks.describe_target(target)


def test_the_capstone_runs_only_its_own_columns():
    from course_lib.chapters import ch08_capstone
    from course_lib.profiles import get_profile
    quick = get_profile("quick")
    assert checks.TARGET_SPARSITY in ch08_capstone.budget(quick).sparsities
    assert {s for _, s, _ in ch08_capstone.family_jobs("unstructured", quick, sparsities=[0.95])} == {0.95}
    with pytest.raises(ValueError, match="not \\[0.5\\]"):
        ch08_capstone.family_jobs("unstructured", quick, sparsities=[0.5])


def _wanda_rows(weight: torch.Tensor, x: torch.Tensor, sparsity: float, norms: torch.Tensor | None = None,
                whole_layer: bool = False) -> torch.Tensor:
    """Wanda's keep-mask, right or with one of the slips the checks name."""
    scores = weight.abs() * (x.norm(dim=0) if norms is None else norms)
    if whole_layer:
        keep = torch.ones(scores.numel(), dtype=torch.bool)
        keep[scores.flatten().argsort()[:round(sparsity * scores.numel())]] = False
        return keep.reshape(scores.shape)
    mask = torch.zeros_like(weight, dtype=torch.bool)
    return mask.scatter_(1, scores.topk(round((1 - sparsity) * weight.shape[1]), dim=1).indices, True)


def test_wanda_mask_mistakes_are_named():
    checks.check_wanda_mask(_wanda_rows)
    slips = {"across the whole layer": lambda w, x, s: _wanda_rows(w, x, s, whole_layer=True),
             "no square root": lambda w, x, s: _wanda_rows(w, x, s, norms=x.pow(2).sum(0)),
             "alone (magnitude)": lambda w, x, s: _wanda_rows(w, x, s, norms=torch.ones(x.shape[1]))}
    for words, slip in slips.items():
        with pytest.raises(checks.CheckFailed, match=re.escape(words)):
            checks.check_wanda_mask(slip)


def _obs(w: torch.Tensor, h: torch.Tensor, saliency_by_h: bool = False, update_with_h: bool = False,
         update: bool = True, smallest_w: bool = False) -> tuple[int, torch.Tensor]:
    inverse = torch.linalg.inv(h)
    q = int(torch.argmin(w ** 2 / (h.diagonal() if saliency_by_h else inverse.diagonal())))
    q = int(torch.argmin(w.abs())) if smallest_w else q
    direction = h[:, q] / h[q, q] if update_with_h else inverse[:, q] / inverse[q, q]
    row = w - w[q] * direction if update else w.clone()
    row[q] = 0.0
    return q, row


def test_obs_step_mistakes_are_named():
    checks.check_obs_step(_obs)
    for words, options in (("left the others unchanged", {"update": False}),
                           ("not of H", {"update_with_h": True}),
                           ("divided by H_qq", {"saliency_by_h": True}),
                           ("removed the smallest |w_q|", {"smallest_w": True})):
        with pytest.raises(checks.CheckFailed, match=re.escape(words)):
            checks.check_obs_step(lambda w, h, o=options: _obs(w, h, **o))


def test_wanda_2_4_mistakes_are_named():
    def two_of_four(weight, x, norms=None, down_columns=False):
        scores = weight.abs() * (x.norm(dim=0) if norms is None else norms)
        if down_columns:
            scores = scores.T
        groups = scores.reshape(scores.shape[0], -1, 4)
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, groups.topk(2, dim=2).indices, True)
        mask = mask.reshape(scores.shape)
        return mask.T if down_columns else mask

    checks.check_wanda_2_4(two_of_four)
    with pytest.raises(checks.CheckFailed, match="magnitude's"):
        checks.check_wanda_2_4(lambda w, x: two_of_four(w, x, norms=torch.ones(x.shape[1])))
    with pytest.raises(checks.CheckFailed, match="down the columns"):
        checks.check_wanda_2_4(lambda w, x: two_of_four(w, x, down_columns=True))


def test_refit_mistakes_are_named():
    def refit(weight, x, keep, solve=True):
        x, out = x.double(), torch.zeros_like(weight, dtype=torch.float64)
        for r in range(weight.shape[0]):
            if solve:
                out[r, keep[r]] = torch.linalg.lstsq(x[:, keep[r]], (x @ weight[r].double())[:, None]).solution[:, 0]
            else:
                out[r, keep[r]] = weight[r, keep[r]].double()
        return out

    checks.check_refit(refit)
    with pytest.raises(checks.CheckFailed, match="left the kept ones as they were"):
        checks.check_refit(lambda w, x, k: refit(w, x, k, solve=False))
    with pytest.raises(checks.CheckFailed, match="not zero"):
        checks.check_refit(lambda w, x, k: refit(w, x, k) + (~k).double())
    with pytest.raises(checks.CheckFailed, match=r"raised .*x\.norm\(dim=0\)"):
        checks.check_wanda_mask(lambda w, x, s: w.abs() * x.norm(dim=1))  # one norm per token: a shape error


def test_a_wanda_mask_with_the_right_counts_and_the_wrong_weights_is_named():
    def int_not_round(weight, x, sparsity):  # int() where the task says round(): 7 kept of 10 at 25 %, not 8
        scores = weight.abs() * x.norm(dim=0)
        mask = torch.zeros_like(weight, dtype=torch.bool)
        return mask.scatter_(1, scores.topk(int((1 - sparsity) * weight.shape[1]), dim=1).indices, True)

    with pytest.raises(checks.CheckFailed, match=r"round\(\(1 - sparsity\) · columns\) = 8 of 10"):
        checks.check_wanda_mask(int_not_round)
    with pytest.raises(checks.CheckFailed, match="right number .* but not the right weights"):
        checks.check_wanda_mask(lambda w, x, s: _wanda_rows(w, x, s, norms=x.abs().amax(0)))
