"""Sampling k of n, differentiably: Gumbel-top-k and its relaxation.

**Gumbel-max.** Add independent Gumbel noise ``g_i = -log(-log(u_i))`` to
logits ``phi_i``; the index of the largest ``phi_i + g_i`` is a sample from
``softmax(phi)``. **Gumbel-top-k** keeps the k largest instead: a sample of k
*distinct* indices, drawn one after another without replacement (the
Plackett-Luce distribution), and an exact k-hot mask.

Sorting has no useful gradient. The **relaxation** (Deep Probabilistic
Subsampling, Huijben et al. 2020) replaces each of the k picks by a softmax
at temperature ``tau`` over the perturbed logits, with the entries already
picked excluded, and sums the k softmaxes: a soft mask with k in total,
close to the hard one when ``tau`` is small. **Straight-through**: the
forward pass uses the hard mask, the backward pass the soft mask's gradient::

    mask = hard + (soft - soft.detach())    # value: exactly hard; gradient: d soft

Everything works row by row along the last dimension (one row per output
neuron, per filter or per layer: :mod:`course_lib.dpp.masks`).
"""

from __future__ import annotations

import itertools
import math

import torch


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the row length {n}, got {k}.")


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))``, drawn on the CPU (the same numbers on every device) and moved."""
    u = torch.rand(shape, generator=generator).clamp(1e-12, 1.0 - 1e-7)
    return (-torch.log(-torch.log(u))).to(device)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A 0/1 tensor like ``scores`` with a 1 at the k largest entries of every row (last dimension)."""
    _check_k(k, scores.shape[-1])
    return torch.zeros_like(scores).scatter_(-1, scores.topk(k, dim=-1).indices, 1.0)


def successive_softmaxes(perturbed: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """The relaxation as it is defined: k softmaxes, each without the hard picks made before it, summed.

    A loop of k steps: clear, and slow for large k. :func:`relaxed_top_k`
    computes the same values (and gradients) in closed form; this one is the
    reference that tests and the benchmark compare it with.
    """
    _check_k(k, perturbed.shape[-1])
    order = perturbed.detach().topk(k, dim=-1).indices  # the hard picks, in order
    picked = torch.zeros_like(perturbed, dtype=torch.bool)
    soft = torch.zeros_like(perturbed)
    for j in range(k):
        soft = soft + torch.softmax((perturbed / temperature).masked_fill(picked, -torch.inf), dim=-1)
        picked = picked.scatter(-1, order[..., j:j + 1], True)
    return soft


def relaxation_and_picks(scaled: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The soft k-hot mask of ``scaled`` (perturbed logits / temperature) and the indices of its top k."""
    top, picks = scaled.topk(k, dim=-1)  # the k picks, largest first
    log_rest = scaled.scatter(-1, picks, float("-inf")).logsumexp(dim=-1, keepdim=True)  # never picked
    log_left = torch.logaddexp(top.flip(-1).logcumsumexp(dim=-1).flip(-1), log_rest)  # log R_j, j = 0 .. k-1
    log_steps = (-log_left).logcumsumexp(dim=-1)  # log(1/R_0 + ... + 1/R_j)
    step_of_entry = log_steps[..., -1:].expand_as(scaled).scatter(-1, picks, log_steps)  # not picked: all k steps
    return torch.exp(scaled + step_of_entry), picks


def relaxed_top_k(perturbed: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """The soft k-hot mask: k successive softmaxes of ``perturbed / temperature``, each without the entries
    the hard top-k picked before it, summed (every row sums to k).

    Written as a loop, step j is ``softmax(s masked at the first j picks)``,
    and an entry contributes to every step up to the one that picks it (to
    all k if it is never picked). Step j's normaliser is the mass left after
    the j largest entries, ``R_j = sum of exp(s) outside the first j picks``,
    so the sum of the k softmaxes is, for an entry picked at step r (``r = k - 1``
    if it is never picked)::

        soft_i = exp(s_i) * (1 / R_0 + 1 / R_1 + ... + 1 / R_r)

    One ``topk``, one log-sum-exp over the entries never picked and two
    cumulative sums over the k picks, in log space, compute it for every row
    at once, stable at any temperature and about ten times faster than the
    loop of k softmaxes (a unit test checks that values and gradients agree).
    """
    _check_k(k, perturbed.shape[-1])
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    return relaxation_and_picks(perturbed / temperature, k)[0]


def sample_k_hot(logits: torch.Tensor, k: int, temperature: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A straight-through k-hot sample per row: exactly k ones forward, the relaxation's gradient backward."""
    _check_k(k, logits.shape[-1])
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    perturbed = logits + gumbel_noise(logits.shape, generator, logits.device)
    soft, picks = relaxation_and_picks(perturbed / temperature, k)
    hard = torch.zeros_like(soft).scatter_(-1, picks.detach(), 1.0)  # the top k of the perturbed logits
    return hard + (soft - soft.detach())  # exactly hard in value (x - x is 0), the soft gradient backward


def inclusion_probabilities(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Exact probability that each entry of one short row is among the Gumbel-top-k.

    Sums the Plackett-Luce probability of every ordered k-tuple: picking
    ``i_1, ..., i_k`` one after another with probabilities proportional to
    ``exp(phi)`` among the entries not picked yet. There are n!/(n-k)! tuples,
    so this is for rows of a few entries (the sampler's demonstration and tests).
    """
    if logits.dim() != 1:
        raise ValueError(f"inclusion_probabilities takes one row (a 1-d tensor), got shape {tuple(logits.shape)}.")
    n = logits.numel()
    _check_k(k, n)
    if math.perm(n, k) > 200_000:
        raise ValueError(f"{math.perm(n, k):,} ordered {k}-tuples of {n}: too many to enumerate; use a row of "
                         "at most about 10 entries.")
    weights = torch.exp(logits.double() - logits.double().max()).tolist()
    inclusion = [0.0] * n
    for picks in itertools.permutations(range(n), k):
        probability, remaining = 1.0, sum(weights)
        for i in picks:
            probability *= weights[i] / remaining
            remaining -= weights[i]
        for i in picks:
            inclusion[i] += probability
    return torch.tensor(inclusion, dtype=logits.dtype)
