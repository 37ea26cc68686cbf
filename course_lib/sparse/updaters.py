"""Mask updaters: masks that change while the network trains.

Every method here answers two questions separately, as ``torch.ao.pruning``
separates a sparsifier from its scheduler and google-research/rigl separates
its mask updaters from their schedules:

* **when and how much** - :class:`MaskUpdater`: an update every
  ``update_every`` steps from ``begin_step`` to ``end_step`` (by default
  ``end_fraction`` of training), with an *amount* from a schedule
  (:mod:`course_lib.sparse.schedules`);
* **which weights** - the subclasses.

Four methods, four small subclasses:

==============  ======================  ==================================  ==========================
method          amount (schedule)       drop                                grow
==============  ======================  ==================================  ==========================
:class:`AGP`    cubic target sparsity   the pruning criterion's lowest      nothing
:class:`Static` (never updates)         nothing                             nothing
:class:`SET`    cosine drop fraction    smallest ``|w|``                    uniformly at random
:class:`RigL`   cosine drop fraction    smallest ``|w|``                    largest ``|dense gradient|``
==============  ======================  ==================================  ==========================

Static, SET and RigL start from a random mask with each layer's density
(:mod:`course_lib.sparse.densities`) and keep every layer's number of
weights exactly: a drop of k is followed by a growth of k. New connections start
at zero with zero optimizer state (momentum, Adam's moments), and on an
update step the optimizer does not move the weights (the mask update *is*
that step), as in RigL's reference code.

Use one as a training hook::

    rigl = RigL(sparsity=0.9, distribution="erk", update_every=100)
    history = train(model, data, config, hooks=[rigl])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from course_lib.masks import Masks, WeightMask, apply_masks, mask_layers, scale_to_kept_fan_in, zero_pruned_weights
from course_lib.masks import check_sparsity, trainable_tensor
from course_lib.profiles import shifted_seed
from course_lib.sparse.densities import Distribution, layer_densities, random_masks
from course_lib.sparse.schedules import agp_sparsity, cosine_drop_fraction, default_end_step
from course_lib.training.hooks import Hook, TrainContext


class MaskUpdater(Hook):
    """When and how much: every ``update_every`` steps in ``[begin_step, end_step]``.

    ``end_step`` defaults to ``end_fraction`` of the run's steps (known once
    training starts). Subclasses define :meth:`amount` (the schedule's value
    at a step) and how an update picks weights. After every optimizer step
    the pruned weights are set to zero again, so nothing revives them.

    Attributes:
        history: ``(step, amount)`` of every update made.
    """

    def __init__(self, update_every: int, begin_step: int = 0, end_step: int | None = None,
                 end_fraction: float = 0.75) -> None:
        if update_every < 1:
            raise ValueError(f"update_every must be at least 1 step, got {update_every}.")
        if not 0.0 < end_fraction <= 1.0:
            raise ValueError(f"end_fraction must be in (0, 1], got {end_fraction}.")
        if end_step is not None and end_step <= begin_step:
            raise ValueError(f"end_step ({end_step}) must come after begin_step ({begin_step}).")
        self.update_every, self.begin_step, self.end_step = update_every, begin_step, end_step
        self.end_fraction = end_fraction
        self.history: list[tuple[int, float]] = []

    def on_start(self, ctx: TrainContext) -> None:
        if self.end_step is None:
            self.end_step = default_end_step(ctx.total_steps, self.end_fraction, self.begin_step)

    def is_due(self, step: int) -> bool:
        """Is ``step`` (counted from 1) an update step?"""
        assert self.end_step is not None, "the end step is known once training starts"
        on_grid = (step - self.begin_step) % self.update_every == 0 or step == self.end_step
        return self.begin_step <= step <= self.end_step and on_grid

    def amount(self, step: int) -> float:
        """How much this update changes: a target sparsity (AGP) or a drop fraction (SET, RigL)."""
        raise NotImplementedError

    def after_step(self, ctx: TrainContext) -> None:
        zero_pruned_weights(ctx.model)


class AGP(MaskUpdater):
    """Gradual magnitude pruning (Zhu & Gupta 2017): the sparsity rises along a cubic curve.

    ``make_masks(model, sparsity)`` says *which* weights (e.g.
    ``procedures.magnitude("global")``); masks only ever get sparser.
    Example::

        agp = AGP(magnitude("global"), final_sparsity=0.9, end_step=2000, update_every=100)
        train(model, data, config, hooks=[agp])
    """

    def __init__(self, make_masks: Callable[[nn.Module, float], Masks], final_sparsity: float,
                 update_every: int = 100, begin_step: int = 0, end_step: int | None = None,
                 end_fraction: float = 0.75, initial_sparsity: float = 0.0) -> None:
        super().__init__(update_every, begin_step, end_step, end_fraction)
        check_sparsity(final_sparsity, "final_sparsity")
        check_sparsity(initial_sparsity, "initial_sparsity")
        self.make_masks = make_masks
        self.final_sparsity, self.initial_sparsity = final_sparsity, initial_sparsity

    def amount(self, step: int) -> float:
        assert self.end_step is not None
        return agp_sparsity(step, self.final_sparsity, self.begin_step, self.end_step, self.initial_sparsity)

    def after_step(self, ctx: TrainContext) -> None:
        if self.is_due(ctx.step):
            target = self.amount(ctx.step)
            if not self.history or target > self.history[-1][1]:
                apply_masks(ctx.model, self.make_masks(ctx.model, target))
                self.history.append((ctx.step, target))
        super().after_step(ctx)


class DropAndGrow(MaskUpdater):
    """Sparse training: start sparse, keep each layer's weight count, move the mask.

    On start: one random mask per layer with the densities of ``distribution``.
    Every update: drop ``round(f * active)`` weights of each layer with the
    lowest :meth:`drop_scores`, grow as many with the highest
    :meth:`grow_scores` among the inactive ones, where
    ``f = drop_fraction * (1 + cos(pi * t / T_end)) / 2`` decays to 0 at ``end_step``.

    Args:
        sparsity: global fraction of the prunable weights that are zero.
        distribution: how the density is shared between layers.
        update_every: steps between mask updates (Delta T).
        drop_fraction: the fraction moved at the first update (alpha).
        end_fraction: updates stop after this fraction of training (T_end).
        exclude: layers kept dense.
        seed: seeds the initial masks (and SET's random growth).
        fan_in_init: rescale the initial weights to each unit's *kept* fan-in
            (:func:`~course_lib.masks.scale_to_kept_fan_in`), as the RigL
            authors' MLP configurations do; otherwise a 95 %-sparse layer
            starts with outputs about 4.5x too small.
    """

    needs_dense_grad = False
    grad_batches = 1  # batches whose dense gradient an update reads: its own (RigL can take more)

    def __init__(self, sparsity: float, distribution: Distribution = "erk", update_every: int = 100,
                 drop_fraction: float = 0.3, end_fraction: float = 0.75, exclude: tuple[str, ...] = (),
                 seed: int = 0, fan_in_init: bool = True) -> None:
        super().__init__(update_every, begin_step=0, end_step=None, end_fraction=end_fraction)
        check_sparsity(sparsity)
        if not 0.0 <= drop_fraction <= 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1], got {drop_fraction}.")
        self.sparsity, self.distribution, self.exclude = sparsity, distribution, exclude
        self.drop_fraction, self.seed, self.fan_in_init = drop_fraction, seed, fan_in_init
        self.generator = torch.Generator().manual_seed(shifted_seed(seed))

    def on_start(self, ctx: TrainContext) -> None:
        super().on_start(ctx)
        densities = layer_densities(ctx.model, self.sparsity, self.distribution, self.exclude)
        apply_masks(ctx.model, random_masks(ctx.model, densities, self.seed))
        if self.fan_in_init:
            scale_to_kept_fan_in(ctx.model)

    def amount(self, step: int) -> float:
        assert self.end_step is not None
        return cosine_drop_fraction(step, self.drop_fraction, self.begin_step, self.end_step)

    def is_due(self, step: int) -> bool:
        # Step 0 is not an update: the first one comes after update_every steps of training.
        return step > self.begin_step and super().is_due(step) and step < self.end_step

    def drop_scores(self, name: str, weight: torch.Tensor, mask: WeightMask) -> torch.Tensor:
        """Higher = keep. SET and RigL drop the smallest magnitudes."""
        return weight.detach().abs()

    def grow_scores(self, name: str, weight: torch.Tensor, mask: WeightMask) -> torch.Tensor:
        """Higher = grow first."""
        raise NotImplementedError

    def collecting(self, step: int) -> bool:
        """Does step ``step`` (counted from 1) keep its dense gradient for an update: the update's own, or one of the
        ``grad_batches - 1`` steps before it?"""
        return any(self.is_due(step + ahead) for ahead in range(self.grad_batches))

    def before_forward(self, ctx: TrainContext) -> None:
        if self.needs_dense_grad and self.collecting(ctx.step + 1):
            for mask in mask_layers(ctx.model).values():
                mask.capture_dense_grad = True

    def after_backward(self, ctx: TrainContext) -> None:
        if self.is_due(ctx.step + 1):
            fraction = self.amount(ctx.step + 1)
            for name, mask in mask_layers(ctx.model).items():
                self.update_layer(ctx, name, mask, fraction)
                mask.capture_dense_grad, mask.dense_grad = False, None
            self.history.append((ctx.step + 1, fraction))
            ctx.skip_step = True  # the mask update replaces this step's weight update

    @torch.no_grad()
    def update_layer(self, ctx: TrainContext, name: str, mask: WeightMask, fraction: float) -> None:
        """Drop and regrow ``round(fraction * active)`` weights of one layer; reset the new connections."""
        module = ctx.model.get_submodule(name.rpartition(".")[0])
        weight = trainable_tensor(module, name.rpartition(".")[2])
        active = mask.mask.bool()
        k = round(fraction * int(active.sum()))
        if k == 0:
            return
        new_mask, new = drop_and_grow(active, self.drop_scores(name, weight, mask),
                                      self.grow_scores(name, weight, mask), k)
        weight[new] = 0.0
        _reset_optimizer_state(ctx.optimizer, weight, new.flatten().nonzero().flatten())
        mask.mask.copy_(new_mask.to(mask.mask.dtype))


def drop_and_grow(active: torch.Tensor, drop_scores: torch.Tensor, grow_scores: torch.Tensor,
                  k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's mask update: drop the ``k`` active weights with the lowest ``drop_scores``, then
    grow the ``k`` inactive ones with the highest ``grow_scores``.

    A weight just dropped may be grown back at once (RigL's rule); it is then
    not *new* and keeps its value. Returns the new boolean mask and the new
    connections (grown, not active before), which start at zero.
    """
    if not 0 <= k <= int(active.sum()):
        raise ValueError(f"k must be between 0 and the {int(active.sum())} active weights, got {k}.")
    if k == 0:
        return active.clone(), torch.zeros_like(active)
    drop = _lowest(torch.where(active, drop_scores, torch.inf), k)
    kept = active.flatten().clone()
    kept[drop] = False
    grow = _lowest(torch.where(kept, torch.inf, -grow_scores.flatten()), k)
    new_mask = kept.clone()
    new_mask[grow] = True
    new_mask = new_mask.reshape(active.shape)
    return new_mask, new_mask & ~active


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the ``k`` lowest scores; ties at the cut go to the lower index (the same set on every device).

    ``topk`` finds the cut in one pass; sorting every weight of a layer would
    make a RigL update several times slower, and topk alone may break ties
    differently on different devices.
    """
    flat = scores.flatten()
    cut = torch.topk(flat, k, largest=False, sorted=False).values.max()
    below = torch.nonzero(flat < cut).flatten()
    at_cut = torch.nonzero(flat == cut).flatten()[: k - below.numel()]
    return torch.cat([below, at_cut])


def _reset_optimizer_state(optimizer: torch.optim.Optimizer | None, weight: torch.Tensor,
                           indices: torch.Tensor) -> None:
    """Zero every per-weight optimizer buffer (SGD momentum, Adam's moments) at ``indices``."""
    if optimizer is None:
        return
    for value in optimizer.state.get(weight, {}).values():
        if torch.is_tensor(value) and value.shape == weight.shape:
            value.view(-1)[indices] = 0.0


class Static(DropAndGrow):
    """Static sparse training: a random mask with the layer densities, fixed for the whole run."""

    def is_due(self, step: int) -> bool:
        return False


class SET(DropAndGrow):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop the smallest |w|, regrow at random."""

    def grow_scores(self, name: str, weight: torch.Tensor, mask: WeightMask) -> torch.Tensor:
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)


class RigL(DropAndGrow):
    """Rigged Lottery (Evci et al. 2020): drop the smallest |w|, regrow where the *dense* gradient is largest.

    The mask's parametrization passes only masked gradients to the weights, so
    on an update step the masks keep the gradient of the whole weight
    (``WeightMask.capture_dense_grad``) for this score.

    Args:
        grad_batches: how many batches' dense gradients the grow score sums: the update step's own
            (1, RigL's rule) or also those of the ``grad_batches - 1`` ordinary steps before it. One
            batch is a noisy estimate of the gradient when batches are small; each extra batch costs one
            more dense weight gradient (the tracker counts it). The other arguments are
            :class:`DropAndGrow`'s.
    """

    needs_dense_grad = True

    def __init__(self, *args: object, grad_batches: int = 1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if grad_batches < 1:
            raise ValueError(f"grad_batches must be at least 1 (the update step's own batch), got {grad_batches}.")
        self.grad_batches = grad_batches
        self._grad_sums: dict[str, torch.Tensor] = {}

    def after_backward(self, ctx: TrainContext) -> None:
        if self.collecting(ctx.step + 1) and not self.is_due(ctx.step + 1):
            for name, mask in mask_layers(ctx.model).items():  # an earlier batch: add, then train as usual
                if mask.dense_grad is not None:
                    previous = self._grad_sums.get(name)
                    self._grad_sums[name] = mask.dense_grad if previous is None else previous + mask.dense_grad
                mask.capture_dense_grad, mask.dense_grad = False, None
        super().after_backward(ctx)

    def grow_scores(self, name: str, weight: torch.Tensor, mask: WeightMask) -> torch.Tensor:
        if mask.dense_grad is None:
            raise RuntimeError(f"No dense gradient was kept for {name!r}: RigL must run as a training hook, "
                               "so that it can ask the masks for it before the forward pass.")
        earlier = self._grad_sums.pop(name, None)
        return (mask.dense_grad if earlier is None else earlier + mask.dense_grad).abs()
