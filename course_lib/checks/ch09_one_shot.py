"""The checks of exercise 9: one-shot pruning of a trained layer from calibration inputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.checks.base import fail, ok
from course_lib.pruning import one_shot


def _inputs(tokens: int = 256, features: int = 16, seed: int = 0) -> torch.Tensor:
    """Correlated calibration inputs whose channels differ in size by a factor of 100, one row per token."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=g) / features ** 0.5 + torch.eye(features)
    scales = torch.logspace(-1, 1, features)[torch.randperm(features, generator=g)]
    return (torch.randn(tokens, features, generator=g) @ mixing) * scales


def _calibration(x: torch.Tensor) -> one_shot.Calibration:
    calibration = one_shot.Calibration(x.shape[1])
    calibration.add(x)
    return calibration


def _layer_wide(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[scores.flatten().argsort()[:round(sparsity * scores.numel())]] = False
    return keep.reshape(scores.shape)


def _call(function: Callable[..., object], *args: object, what: str, hint: str) -> object:
    """Call the student's function; an exception becomes a check failure that says what to look at."""
    try:
        return function(*args)
    except NotImplementedError:  # the task is not done yet: the stub's own message says so
        raise
    except Exception as error:  # noqa: BLE001 - any other error in the student's code is reported, not raised
        fail(f"{what}: your function raised {type(error).__name__}: {error}. {hint}")


def _as_mask(got: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    mask = torch.as_tensor(got)
    if mask.shape != shape:
        fail(f"{what}: return a keep-mask of the weight's shape {shape}, got shape {tuple(mask.shape)}.")
    if mask.dtype != torch.bool and not torch.all((mask == 0) | (mask == 1)):
        fail(f"{what}: return a mask of True (kept) and False (pruned), or of ones and zeros.")
    return mask.bool()


def check_wanda_mask(wanda_mask: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """``wanda_mask(weight, x, sparsity)``: keep the largest ``|W_ij| · ‖X_j‖₂`` of every output row."""
    wide = (_inputs(), torch.randn(8, 16, generator=torch.Generator().manual_seed(1)))
    narrow = (_inputs(features=10, seed=3), torch.randn(8, 10, generator=torch.Generator().manual_seed(2)))
    for (x, weight), sparsity in ((wide, 0.5), (wide, 0.25), (narrow, 0.25)):  # 10 · 0.75 = 7.5: round, not int
        norms = _calibration(x).input_norms().float()
        got = _as_mask(_call(wanda_mask, weight.clone(), x.clone(), sparsity, what=f"at {sparsity:.0%}",
                             hint="x holds one row per token and one column per input: input j's norm over all "
                                  "tokens is x.norm(dim=0), a vector with one entry per column of the weight."),
                       tuple(weight.shape), f"at {sparsity:.0%}")
        expected = one_shot.mask_from_scores(one_shot.wanda_scores(weight, _calibration(x)), sparsity)
        if torch.equal(got, expected):
            continue
        variants = {
            "you compared the scores across the whole layer (torchao's WandaSparsifier does); the paper compares "
            "them within each output row, so that every row keeps the same share": _layer_wide(weight.abs() * norms,
                                                                                               sparsity),
            "your scores use ‖X_j‖² (no square root); Wanda multiplies |W_ij| by the norm ‖X_j‖₂ itself":
                one_shot.mask_from_scores(weight.abs() * norms ** 2, sparsity),
            "you ranked the weights by |W_ij| alone (magnitude): multiply each by the norm of its input column":
                one_shot.mask_from_scores(weight.abs(), sparsity),
            "you kept the smallest scores: Wanda keeps the largest |W_ij| · ‖X_j‖₂":
                ~one_shot.mask_from_scores(weight.abs() * norms, 1 - sparsity),
        }
        hint = next((h for h, mask in variants.items() if torch.equal(got, mask)), None)
        columns, should_keep = weight.shape[1], int(expected[0].sum())
        kept = got.sum(dim=1).tolist()
        if hint is None and all(k == should_keep for k in kept):
            row = int((got != expected).any(dim=1).nonzero()[0])
            hint = (f"every row keeps the right number ({should_keep} of {columns}), but not the right weights: in "
                    f"row {row} you keep columns {got[row].nonzero().flatten().tolist()}; rank each row by "
                    "|W_ij| · ‖X_j‖₂")
        fail(f"at {sparsity:.0%} of {columns} columns your mask differs from Wanda's (course_lib.pruning.one_shot): "
             + (hint or f"each row should keep round((1 - sparsity) · columns) = {should_keep} of {columns}; yours "
                        f"keep {kept}") + ".")
    ok("Wanda's mask within each output row matches course_lib.pruning.one_shot at 50 % and 25 %, on 16 and 10 inputs")


def obs_reference(w: torch.Tensor, hessian: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Least squares solved directly: for each q, the row with weight q removed that changes ``(w − w') H (w − w')ᵀ``
    the least; the q whose best change is smallest, and that row."""
    best = None
    for q in range(len(w)):
        others = [j for j in range(len(w)) if j != q]
        # minimise d H d^T over the change d = v - w, with d_q = -w_q fixed: H_FF d_F + H_Fq d_q = 0 for the others
        change = torch.linalg.solve(hessian[others][:, others], hessian[others, q] * w[q])
        v = w.clone()
        v[q] = 0.0
        v[others] = w[others] + change
        loss = float((w - v) @ hessian @ (w - v))
        if best is None or loss < best[0]:
            best = (loss, q, v)
    return best[1], best[2]


def check_obs_step(obs_step: Callable[[torch.Tensor, torch.Tensor], tuple[int, torch.Tensor]]) -> None:
    """``obs_step(w, hessian)``: remove the weight of the lowest ``w_q² / [H⁻¹]_qq`` and update the others."""
    x = _inputs(tokens=128, features=8, seed=2).double()
    hessian = x.T @ x / len(x)
    # a row where the smallest |w_q|, the smallest w_q² / H_qq and the right choice are three different weights
    w = torch.randn(8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    result = _call(obs_step, w.clone(), hessian.clone(), what="obs_step",
                   hint="w is one row (a vector), hessian the square matrix of its inputs.")
    if not isinstance(result, tuple) or len(result) != 2:
        fail("return two things: the index q of the weight removed, and the updated row.")
    q, got = int(result[0]), torch.as_tensor(result[1]).double()
    q_expected, expected = obs_reference(w, hessian)
    if got.shape != w.shape:
        fail(f"return the updated row with the shape of w {tuple(w.shape)}, got {tuple(got.shape)}.")
    if q != q_expected:
        by_h = int(torch.argmin(w ** 2 / hessian.diagonal()))
        by_w = int(torch.argmin(w.abs()))
        hint = ("you divided by H_qq: the saliency divides by the inverse's diagonal, [H⁻¹]_qq" if q == by_h else
                "you removed the smallest |w_q|: the saliency is w_q² / [H⁻¹]_qq" if q == by_w else
                "the saliency is w_q² / [H⁻¹]_qq, smallest first")
        fail(f"you removed weight {q}; the least-squares optimum removes weight {q_expected} ({hint}).")
    if abs(float(got[q])) > 1e-9:
        fail(f"weight {q} is removed: set it to exactly zero in the row you return (it is {float(got[q]):.3g}).")
    if torch.allclose(got, torch.where(torch.arange(len(w)) == q, 0.0, w), atol=1e-9):
        fail(f"you zeroed weight {q} but left the others unchanged: move them by the δ that makes δ H δᵀ smallest "
             "under the constraint δ_q = -w_q, so that the row's outputs change as little as possible (a Lagrange "
             "multiplier for the constraint gives δ in closed form).")
    if not torch.allclose(got, expected, atol=1e-6):
        with_h = w - w[q] / hessian[q, q] * hessian[:, q]
        hint = ("your update is built from H's column q; setting the Lagrangian's gradient to zero gives δ "
                "proportional to a column of H⁻¹, not of H"
                if torch.allclose(got, torch.where(torch.arange(len(w)) == q, 0.0, with_h), atol=1e-6) else
                "minimise δ H δᵀ under δ_q = -w_q, and check the sign and the scale of your δ")
        fail(f"your updated row differs from least squares solved directly by up to "
             f"{float((got - expected).abs().max()):.3g} ({hint}).")
    ok("the weight removed and the row's update equal least squares solved directly")


def check_wanda_2_4(wanda_2_4: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``wanda_2_4(weight, x)``: in every row, keep the 2 largest ``|W_ij| · ‖X_j‖₂`` of each 4 consecutive inputs."""
    x, weight = _inputs(), torch.randn(8, 16, generator=torch.Generator().manual_seed(4))
    norms = _calibration(x).input_norms().float()
    got = _as_mask(_call(wanda_2_4, weight.clone(), x.clone(), what="2:4",
                         hint="reshape the scores to (rows, columns // 4, 4) to reach each group of 4 inputs."),
                   tuple(weight.shape), "2:4")
    expected = one_shot.mask_from_scores(weight.abs() * norms, nm=(2, 4))
    if torch.equal(got, expected):
        ok("2:4 with Wanda's scores matches course_lib.pruning.one_shot: 2 kept in every group of 4 inputs")
        return
    groups = got.reshape(8, 4, 4).sum(-1)
    if not torch.all(groups == 2):
        columns = got.reshape(2, 4, 16).sum(1)  # groups of 4 consecutive outputs in each column
        hint = ("your groups run down the columns: group 4 consecutive *inputs* of each row, weight[:, 4g:4g+4]"
                if torch.all(columns == 2) else f"each group of 4 consecutive inputs of a row keeps exactly 2; "
                f"yours keep {sorted(set(groups.flatten().tolist()))}")
        fail(f"not a 2:4 pattern ({hint}).")
    if torch.equal(got, one_shot.mask_from_scores(weight.abs(), nm=(2, 4))):
        fail("your 2:4 mask is magnitude's: score each weight by |W_ij| · ‖X_j‖₂ before choosing 2 of 4.")
    fail("a valid 2:4 pattern, but not the 2 largest Wanda scores |W_ij| · ‖X_j‖₂ of each group of 4.")


def refit_reference(weight: torch.Tensor, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each row's kept weights re-solved by least squares, ``x ŵ ≈ x w`` (``x``: one row per token), row by row."""
    refit = torch.zeros_like(weight, dtype=torch.float64)
    x, weight = x.double(), weight.double()
    for row in range(weight.shape[0]):
        kept = keep[row]
        solution = torch.linalg.lstsq(x[:, kept], (x @ weight[row])[:, None]).solution[:, 0]
        refit[row, kept] = solution
    return refit


def check_refit(refit: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``refit(weight, x, keep)``: zero the pruned weights and choose the kept ones to reproduce each row's outputs."""
    x, weight = _inputs(seed=5), torch.randn(8, 16, generator=torch.Generator().manual_seed(6))
    keep = one_shot.mask_from_scores(one_shot.wanda_scores(weight, _calibration(x)), nm=(2, 4))
    got = _call(refit, weight.clone(), x.clone(), keep.clone(), what="refit",
                hint="for each row, solve for its kept weights only: x[:, keep[r]] is the tokens' kept inputs.")
    got = torch.as_tensor(got).double()
    error = lambda w: float(((x.double() @ (weight.double() - w).T) ** 2).sum())  # the output error it leaves
    if got.shape != weight.shape:
        fail(f"return the refitted weight with the weight's shape {tuple(weight.shape)}, got {tuple(got.shape)}.")
    if (got[~keep] != 0).any():
        fail("some pruned weights (keep == False) are not zero: the refit changes only the kept weights.")
    expected = refit_reference(weight, x, keep)
    if torch.allclose(got, (weight * keep).double(), atol=1e-6):
        fail("you zeroed the pruned weights but left the kept ones as they were: re-solve each row's kept weights so "
             "that x @ ŵ matches x @ w (the pruned inputs' share of the output must be taken up by the kept ones).")
    if error(got) > error(expected) * (1 + 1e-4) + 1e-9:
        gap = error(got) / error(expected) - 1
        hint = ("so close that it is rounding: solve in float64 (x.double()), float32 loses digits" if gap < 1e-2 else
                "for each row, choose the kept weights that make the row's outputs on x closest to the dense "
                "row's, with nothing else in the objective")
        fail(f"your refit leaves an output error of {error(got):.6g}; least squares reaches {error(expected):.6g} "
             f"({100 * gap:.3g} % more): {hint}.")
    ok("every row's kept weights equal least squares on the calibration inputs, and the pruned ones are zero")
