"""The checks of exercise 7: dynamic probabilistic pruning."""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.dpp import masks as dpp_masks, sampler
from course_lib.checks.base import fail, ok


def check_gumbel_top_k(gumbel_top_k: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]) -> None:
    """``gumbel_top_k(logits, k, generator)``: a k-hot sample per row, distributed as Gumbel-top-k."""
    g = torch.Generator().manual_seed(7)
    logits = torch.tensor([2.0, 1.0, 0.3, 0.0, -0.5])
    draws = 4000
    got = torch.as_tensor(gumbel_top_k(logits.repeat(draws, 1), 2, g)).float()
    if got.shape != (draws, 5):
        fail(f"for logits of shape ({draws}, 5) return a mask of the same shape, got {tuple(got.shape)}.")
    if not torch.all((got == 0) | (got == 1)) or not torch.all(got.sum(1) == 2):
        fail("every row must hold exactly k = 2 ones and zeros elsewhere (a k-hot mask).")
    frequency, exact = got.mean(0), sampler.inclusion_probabilities(logits, 2)
    if torch.all(got == got[0]):
        fail("every row came out the same: add fresh Gumbel noise -log(-log(u)) to the logits for each row "
              "before taking the top k (without noise, top-k is deterministic).")
    _check_uses_the_generator(gumbel_top_k, logits.repeat(50, 1))
    z = (frequency - exact) / torch.sqrt(exact * (1 - exact) / draws)
    if z.abs().max() > 5:  # five standard errors: a correct sampler fails this about once in a million runs
        fail(f"over {draws} samples the entries were kept with frequencies {[round(f, 3) for f in frequency.tolist()]}, "
              f"but Gumbel-top-k keeps them with probabilities {[round(p, 3) for p in exact.tolist()]}. "
              "Perturb with Gumbel noise, g = -log(-log(u)) for u uniform in (0, 1), not Gaussian or uniform noise.")
    ok(f"k-hot rows, inclusion frequencies within 5 standard errors of the exact probabilities ({draws} draws), "
       "and the noise drawn from the generator given")


def _check_uses_the_generator(gumbel_top_k: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor],
                              logits: torch.Tensor) -> None:
    """The same seed must give the same sample, and the sample must not come from (or disturb) the global RNG."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        first = torch.as_tensor(gumbel_top_k(logits, 2, torch.Generator().manual_seed(11))).float()
        torch.manual_seed(1)  # another global state: a sampler that uses the generator does not notice
        again = torch.as_tensor(gumbel_top_k(logits, 2, torch.Generator().manual_seed(11))).float()
        global_after = torch.rand(1)
        torch.manual_seed(1)
        untouched = torch.rand(1)
    finally:
        torch.set_rng_state(state)
    if not torch.equal(first, again):
        fail("two calls with generators seeded alike gave different samples: draw the uniform noise from the "
             "generator you are given, torch.rand(shape, generator=generator), not from torch's global RNG "
             "(a seeded run must be repeatable).")
    if not torch.equal(global_after, untouched):
        fail("your sampler drew from torch's global RNG as well: draw every random number from the generator "
             "you are given (torch.rand(shape, generator=generator)).")


def soft_leave_out(perturbed: torch.Tensor, k: int, temperature: float, add_to_scaled: bool = False) -> torch.Tensor:
    """Xie & Ermon's (2019) relaxed top-k, the check's reference: k softmaxes of ``keys / temperature``, where
    after each one every key gets ``log(1 - a)`` added (``a`` that softmax's output), summed.

    ``add_to_scaled=True`` adds the log to ``keys / temperature`` instead: a mistake the check names.
    """
    keys, soft = perturbed, torch.zeros_like(perturbed)
    for _ in range(k):
        a = torch.softmax(keys / temperature, dim=-1)
        soft = soft + a
        keys = keys + torch.log((1 - a).clamp(min=1e-12)) * (temperature if add_to_scaled else 1.0)
    return soft


def check_soft_top_k(straight_through_soft_top_k: Callable[[torch.Tensor, int, float], torch.Tensor]) -> None:
    """``straight_through_soft_top_k(perturbed, k, temperature)``: hard top-k forward, the gradient of Xie & Ermon's
    soft leave-out relaxation backward."""
    g = torch.Generator().manual_seed(8)
    for k, temperature in ((3, 0.5), (1, 1.0), (4, 2.0)):
        perturbed = (2 * torch.randn(5, 9, generator=g, dtype=torch.float64)).requires_grad_()
        weights = torch.randn(5, 9, generator=g, dtype=torch.float64)
        where = f"k = {k}, temperature {temperature}"
        got = straight_through_soft_top_k(perturbed, k, temperature)
        hard = sampler.top_k_mask(perturbed.detach(), k)
        if not torch.is_tensor(got) or got.shape != perturbed.shape:
            fail(f"return a tensor of the input's shape {tuple(perturbed.shape)}.")
        if not torch.equal(got.detach(), hard):
            soft_like = torch.allclose(got.detach().double().sum(-1), torch.full((5,), float(k), dtype=torch.float64))
            fail("the forward value must be exactly the hard top-k mask (0s and 1s)"
                 + (" - you returned the soft mask; add it as (soft - soft.detach())" if soft_like else "") + ".")
        if not got.requires_grad:
            fail("no gradient reaches the logits: the hard mask has none, so add the soft mask's gradient with "
                 "hard + (soft - soft.detach()).")
        (got * weights).sum().backward()

        def gradient_of(relaxation: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
            x = perturbed.detach().clone().requires_grad_()
            (relaxation(x) * weights).sum().backward()
            return x.grad

        if perturbed.grad is not None and torch.allclose(perturbed.grad, gradient_of(
                lambda x: soft_leave_out(x, k, temperature)), atol=1e-8):
            continue
        mistakes = [
            (lambda x: sampler.relaxed_top_k(x, k, temperature),
             "that is chapter 7's relaxation, which leaves out the entries the HARD top-k picked. This one removes "
             "them softly: after each softmax a, add log(1 - a) to every key, so that what was taken is taken less."),
            (lambda x: k * torch.softmax(x / temperature, dim=-1),
             "all k softmaxes were the same: after each one, add log(1 - a) to the keys before the next."),
            (lambda x: soft_leave_out(x, k, temperature, add_to_scaled=True),
             "you added log(1 - a) to keys / temperature; add it to the keys themselves, and divide the new keys by "
             "the temperature in the next softmax (Xie & Ermon's update)."),
        ]
        for relaxation, message in mistakes:
            if perturbed.grad is not None and torch.allclose(perturbed.grad, gradient_of(relaxation), atol=1e-8):
                fail(f"{where}: {message}")
        fail(f"{where}: the gradient differs from that of Xie & Ermon's relaxation: k softmaxes of keys / "
             "temperature, adding log(1 - a) to the keys after each softmax a, summed.")
    _check_a_sure_pick_stays_finite(straight_through_soft_top_k)
    ok("forward: exactly the hard top-k; backward: the soft leave-out relaxation's gradient, finite even when an "
       "entry is taken for sure")


def _check_a_sure_pick_stays_finite(straight_through_soft_top_k: Callable[[torch.Tensor, int, float], torch.Tensor]) -> None:
    """At a low temperature a clear winner is taken with probability 1 in float32: log(1 - 1) must not reach the
    gradient (DPP anneals the temperature down to where this happens)."""
    perturbed = torch.tensor([[30.0, 0.0, -1.0, 2.0]], requires_grad=True)
    (straight_through_soft_top_k(perturbed, 2, 0.1) * torch.tensor([1.0, -2.0, 0.5, 1.5])).sum().backward()
    if perturbed.grad is None or not torch.isfinite(perturbed.grad).all():
        fail("an entry taken with probability 1 (keys [30, 0, -1, 2], temperature 0.1, float32) gave a gradient of "
             f"{perturbed.grad.tolist() if perturbed.grad is not None else None}: log(1 - a) is log 0 there. Clamp "
             "1 - a at a tiny positive value (e.g. 1e-12) before the log.")


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
            groups = mask.flatten(1).reshape(mask.shape[0], -1, m).count_nonzero(dim=-1)
            if expected and not bool((groups == n).all()):
                hint = (f"N:M means AT MOST {n} non-zeros in each group of {m}: a group may keep fewer "
                        "(an empty mask is N:M sparse too), so compare with <= n, not == n")
            else:
                hint = ("count the non-zeros of each group of m CONSECUTIVE weights, groups starting at the first "
                        "weight of the row (reshape each row to (-1, m)), not of the whole row or of sliding windows")
            fail(f"{what}: you said {bool(got)}, expected {expected} for {n}:{m}. {hint}.")
    try:
        is_n_m(torch.ones(2, 6), 2, 4)
    except ValueError:
        pass
    else:
        fail("a fan-in of 6 is not a multiple of m = 4: the pattern is undefined, raise a ValueError.")
    ok("N:M checks agree with course_lib.dpp.masks.is_n_m_sparse, including rows of a convolution")
