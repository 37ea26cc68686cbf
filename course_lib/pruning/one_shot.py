"""One-shot pruning of trained linear layers from calibration inputs: magnitude, Wanda, SparseGPT.

A trained layer ``y = W x`` (``W``: one row per output, one column per input) is pruned once, without retraining,
so that its outputs on a few calibration inputs ``X`` change as little as possible: the goal is a small
``‖W X − Ŵ X‖²``, not a small ``‖W − Ŵ‖²``. Three ways to choose (and, for SparseGPT, to correct):

============  ====================================================================================
magnitude     keep the largest ``|W_ij|`` of each output row; ``X`` is not looked at
Wanda         keep the largest ``|W_ij| · ‖X_j‖₂`` of each row (Sun et al. 2024): a weight matters as much
              as the input it multiplies, so a small weight on a large input can outrank a large one
SparseGPT     remove weights column by column in order of ``w² / [H⁻¹]_qq`` with ``H = X Xᵀ`` (the optimal
              brain surgeon's saliency), and after each removal move its error onto the row's weights that
              are still to come (Frantar & Alistarh 2023), so the row's output on ``X`` is repaired as it goes
============  ====================================================================================

Two patterns: *unstructured* at a ``sparsity`` (magnitude and Wanda prune that share of every row; SparseGPT that
share of every block of ``block_size`` columns, where the block's rows compete) and *N:M* (``nm=(2, 4)``: each row
keeps the n best of every m consecutive inputs, the pattern sparse tensor cores run; n counts the weights *kept*,
as in :func:`~course_lib.pruning.selection.n_of_m_masks`).

The masks this module returns are boolean tensors of the weight's shape, ``True`` where a weight is **kept**, the
course's convention (:mod:`course_lib.masks`). :func:`calibrate` collects each layer's statistics with forward
hooks; :func:`prune_one_shot` prunes every chosen layer of a model, layer by layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from course_lib.masks import Masks, apply_masks, check_sparsity, is_masked
from course_lib.pruning.selection import n_of_m_keep_mask, row_keep_mask

Method = Literal["magnitude", "wanda", "sparsegpt"]
METHODS: tuple[Method, ...] = ("magnitude", "wanda", "sparsegpt")
NM = tuple[int, int]  # (n kept, of every m consecutive inputs): (2, 4) is 2:4
DampingScale = Literal["mean", "own"]


@dataclass
class Calibration:
    """What one linear layer saw on the calibration inputs: ``Σ x xᵀ`` over every token, and the token count.

    Wanda needs only the diagonal (``‖X_j‖₂² = Σ_t x_tj²``); SparseGPT the whole matrix. Both are sums, so
    batches can be added one at a time (:meth:`add`) without keeping the inputs.
    """

    features: int
    xtx: torch.Tensor = field(init=False)
    tokens: int = 0

    def __post_init__(self) -> None:
        self.xtx = torch.zeros(self.features, self.features, dtype=torch.float64)

    def add(self, inputs: torch.Tensor) -> None:
        """Add a batch of the layer's inputs, shaped ``(..., features)`` (every leading index is one token)."""
        if inputs.shape[-1] != self.features:
            raise ValueError(f"the layer takes {self.features} input features, but the batch has {inputs.shape[-1]} "
                             f"(shape {tuple(inputs.shape)}).")
        x = inputs.detach().reshape(-1, self.features).to("cpu").to(torch.float64)  # MPS has no float64
        self.xtx += x.T @ x
        self.tokens += x.shape[0]

    def input_norms(self) -> torch.Tensor:
        """``‖X_j‖₂`` of every input feature j over all calibration tokens."""
        return self.xtx.diagonal().clamp_min(0.0).sqrt()

    def hessian(self) -> torch.Tensor:
        """``H = X Xᵀ / tokens``: the layer-wise loss ``‖(W − Ŵ) X‖²`` is a quadratic form in ``H`` (the paper's
        ``2 X Xᵀ`` differs by a constant factor, which changes no choice and no update: :func:`sparsegpt`'s damping
        is relative to H's own diagonal)."""
        if self.tokens == 0:
            raise ValueError("no calibration inputs were added: run the calibration batches through the model first.")
        return self.xtx / self.tokens


def _check_pattern(sparsity: float | None, nm: NM | None, columns: int) -> None:
    if (sparsity is None) == (nm is None):
        raise ValueError("give exactly one pattern: sparsity=0.5 (unstructured) or nm=(2, 4) (n of every m pruned).")
    if sparsity is not None:
        check_sparsity(sparsity)
    else:
        n, m = nm
        if not 0 < n < m:
            raise ValueError(f"nm=(n, m) keeps n of every m consecutive inputs, so 0 < n < m; got {nm}.")
        if columns % m:
            raise ValueError(f"N:M needs the inputs ({columns}) to be a multiple of m ({m}): groups of m consecutive "
                             f"inputs must tile each row.")


def mask_from_scores(scores: torch.Tensor, sparsity: float | None = None, nm: NM | None = None) -> torch.Tensor:
    """Keep-mask from per-weight scores, compared **within each output row** (the largest survive; equal scores:
    the lower index goes first), with the course's rules of :mod:`~course_lib.pruning.selection`.

    Unstructured: every row keeps ``round((1 - sparsity) · columns)`` weights. N:M: every row keeps the ``n``
    largest of each ``m`` consecutive inputs.
    """
    _check_pattern(sparsity, nm, scores.shape[1])
    keep = row_keep_mask(scores, sparsity) if sparsity is not None else n_of_m_keep_mask(scores, *nm)
    return keep.bool()


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """``|W_ij|``: the calibration inputs are not looked at."""
    return weight.detach().abs()


def wanda_scores(weight: torch.Tensor, calibration: Calibration) -> torch.Tensor:
    """``|W_ij| · ‖X_j‖₂`` (Sun et al. 2024, eq. 1): each weight times the size of the input it multiplies."""
    return weight.detach().abs() * calibration.input_norms().to(weight.device, weight.dtype)[None, :]  # stats: CPU


def sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float | None = None, nm: NM | None = None,
              prune: torch.Tensor | None = None, block_size: int = 128, damping: float = 0.01,
              damping_scale: DampingScale = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT (Frantar & Alistarh 2023, Algorithm 1): the pruned and corrected weight, and its keep-mask.

    Columns are visited in order. Removing weight ``w`` of column ``q`` changes the row's output on the inputs; the
    optimal brain surgeon's correction of the columns still to come is ``−(w / [H_F⁻¹]_qq) · H_F⁻¹[q, :]``, with
    ``H_F`` the Hessian of those columns. All of those inverses are rows of one Cholesky factor ``U`` of ``H⁻¹``
    (``U[q, q] · U[q, q:]`` is the first row of ``H_F⁻¹``), so each step costs one outer product.

    Args:
        weight: ``(rows, columns)``; not modified.
        hessian: ``(columns, columns)``, e.g. :meth:`Calibration.hessian`.
        sparsity / nm / prune: the pattern, exactly one of them: unstructured (within each block of
            ``block_size`` columns, the ``round(sparsity · rows · block)`` smallest saliencies ``w² / [H_F⁻¹]_qq``
            are pruned, chosen at the block's start), N:M (the n largest saliencies of each group of m kept, chosen
            when the group is reached, from the weights as corrected so far), or a given boolean mask of the weights
            to **remove** (e.g. Wanda's, to correct a mask chosen elsewhere).
        block_size: columns whose mask is chosen together; the correction is applied lazily between blocks.
        damping: added to H's diagonal (H is singular with fewer calibration tokens than inputs, or with inputs
            that are combinations of others), as a share of the mean of
            the diagonal (``damping_scale="mean"``, the paper's code) or of each input's own ``H_jj`` (``"own"``).
            Only ``"own"`` leaves the result unchanged when an input is scaled up and its weights down alike.
    """
    rows, columns = weight.shape
    if prune is None:
        _check_pattern(sparsity, nm, columns)
    elif sparsity is not None or nm is not None:
        raise ValueError("give exactly one pattern: sparsity, nm, or a prune mask.")
    elif prune.shape != weight.shape or prune.dtype != torch.bool:
        raise ValueError(f"prune must be a boolean mask of the weight's shape {tuple(weight.shape)}, True where a "
                         f"weight is removed; got {prune.dtype} of shape {tuple(prune.shape)}.")
    if hessian.shape != (columns, columns):
        raise ValueError(f"the Hessian must be {columns}x{columns} (one row per input), got {tuple(hessian.shape)}.")
    if block_size < 1 or (nm is not None and block_size % nm[1]):
        raise ValueError(f"block_size must be a positive multiple of m, got {block_size}.")
    W = weight.detach().to("cpu").to(torch.float64, copy=True)  # a copy in float64 on the CPU (MPS has no float64)
    H = hessian.detach().to("cpu").to(torch.float64, copy=True)
    dead = H.diagonal() == 0  # an input that is always zero: its weights can go at no cost
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    if damping_scale not in ("mean", "own"):
        raise ValueError(f"damping_scale is 'mean' (a share of H's mean diagonal) or 'own' (of each H_jj), "
                         f"got {damping_scale!r}.")
    H.diagonal().add_(damping * (H.diagonal().mean() if damping_scale == "mean" else H.diagonal()))
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError as error:
        raise ValueError("the calibration Hessian is not positive definite: use more calibration tokens than inputs, "
                         f"or a larger damping (got {damping}).") from error
    removed = torch.zeros(rows, columns, dtype=torch.bool)
    removed[:, dead] = True
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block, U_block = W[:, start:end].clone(), U[start:end, start:end]
        errors = torch.zeros_like(block)
        drop = torch.zeros_like(block, dtype=torch.bool)
        if prune is not None:
            drop = prune[:, start:end].to("cpu", copy=True)
        elif sparsity is not None:
            saliency = (block ** 2 / U_block.diagonal()[None, :] ** 2).flatten()
            lowest = torch.sort(saliency, stable=True).indices[:round(sparsity * saliency.numel())]  # ties: lower index
            drop.view(-1)[lowest] = True
        for i in range(end - start):
            if nm is not None and i % nm[1] == 0:
                group = block[:, i:i + nm[1]] ** 2 / U_block.diagonal()[i:i + nm[1]][None, :] ** 2
                drop[:, i:i + nm[1]] = n_of_m_keep_mask(group, *nm) == 0
            w = block[:, i]
            error = torch.where(drop[:, i], w, torch.zeros_like(w)) / U_block[i, i]  # (w - kept value) / d
            block[:, i:] -= error[:, None] * U_block[i, i:][None, :]  # OBS: the removed weights' error moves right
            block[drop[:, i], i] = 0.0
            errors[:, i] = error
        W[:, start:end] = block
        W[:, end:] -= errors @ U[start:end, end:]  # the block's corrections reach the later columns at once
        removed[:, start:end] |= drop
    return W.to(weight.dtype), ~removed


def calibrate(model: nn.Module, layers: Sequence[str], batches: Iterable[torch.Tensor],
              forward: Callable[[nn.Module, torch.Tensor], object] | None = None) -> dict[str, Calibration]:
    """Run ``batches`` through ``model`` and collect every named linear layer's :class:`Calibration`.

    ``forward(model, batch)`` runs one batch (default ``model(batch)``). The model runs in eval mode without
    gradients; hooks see each layer's *input*, so a layer is calibrated on what the layers before it produce.
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if not isinstance(modules.get(name), nn.Linear)]
    if missing:
        raise ValueError(f"not linear layers of this model: {missing}. Name nn.Linear modules as model.named_modules() "
                         f"does, e.g. {[n for n, m in modules.items() if isinstance(m, nn.Linear)][:3]}.")
    stats = {name: Calibration(modules[name].in_features) for name in layers}
    handles = [modules[name].register_forward_pre_hook(lambda _m, args, s=stats[name]: s.add(args[0]))
               for name in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                (forward or (lambda m, b: m(b)))(model, batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return stats


def prune_layer(layer: nn.Linear, method: Method, calibration: Calibration | None, sparsity: float | None = None,
                nm: NM | None = None, damping_scale: DampingScale = "mean", update: bool = False) -> torch.Tensor:
    """Prune one linear layer in place (SparseGPT also corrects its kept weights); return its keep-mask.

    ``update=True`` corrects the kept weights of a magnitude or Wanda mask with SparseGPT's update too (the
    ablation of Wanda's paper): the mask is chosen one way and the weights repaired the other, so that what the
    choice buys and what the repair buys can be told apart.
    """
    if method not in METHODS:
        raise ValueError(f"unknown one-shot method {method!r}; choose one of {METHODS}.")
    if method == "magnitude" and not update:
        return mask_from_scores(magnitude_scores(layer.weight), sparsity, nm)
    if calibration is None:
        raise ValueError(f"{method} needs the layer's calibration statistics (calibrate(...)).")
    if method == "sparsegpt":
        weight, keep = sparsegpt(layer.weight, calibration.hessian(), sparsity, nm, damping_scale=damping_scale)
    else:
        scores = magnitude_scores(layer.weight) if method == "magnitude" else wanda_scores(layer.weight, calibration)
        keep = mask_from_scores(scores, sparsity, nm)
        if not update:
            return keep
        weight, _ = sparsegpt(layer.weight, calibration.hessian(), prune=~keep.cpu(), damping_scale=damping_scale)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return keep.to(layer.weight.device)


def prune_one_shot(model: nn.Module, layers: Sequence[str], method: Method, batches: Sequence[torch.Tensor],
                   sparsity: float | None = None, nm: NM | None = None, sequential: bool = True,
                   forward: Callable[[nn.Module, torch.Tensor], object] | None = None,
                   damping_scale: DampingScale = "mean", update: bool = False) -> Masks:
    """Prune ``layers`` of a trained ``model`` in one shot and attach the masks (:func:`~course_lib.masks.apply_masks`).

    ``sequential=True`` (as both papers do) calibrates each layer on the model whose earlier layers are already
    pruned, one layer at a time, so a layer's correction sees the errors before it; ``False`` calibrates every layer
    once on the dense model. Layers are pruned in the order given: list them from input to output.
    ``damping_scale`` goes to :func:`sparsegpt`; ``update`` to :func:`prune_layer`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown one-shot method {method!r}; choose one of {METHODS}.")
    if is_masked(model):
        raise ValueError("this model already carries masks: one-shot pruning starts from a dense trained model "
                         "(remove_masks(model) first, or prune a fresh copy).")
    modules = dict(model.named_modules())
    reads_inputs = method != "magnitude" or update
    stats = calibrate(model, layers, batches, forward) if reads_inputs and not sequential else {}
    masks: Masks = {}
    for name in layers:
        if reads_inputs and sequential:
            stats.update(calibrate(model, [name], batches, forward))
        masks[f"{name}.weight"] = prune_layer(modules[name], method, stats.get(name), sparsity, nm, damping_scale,
                                              update)
        apply_masks(model, {f"{name}.weight": masks[f"{name}.weight"]})  # now: the next layer calibrates on it
    return masks
