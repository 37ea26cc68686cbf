"""Hooks: how a method plugs into the one training loop.

:func:`course_lib.training.train` is the only training loop of the course.
Pruning and sparse-training methods do not copy it; they hand it *hooks*.
A hook is an object with any of these phases (each optional), called in
this order::

    on_start(ctx)            once, before the optimizer exists: attach masks,
                             choose ERK densities, register parametrizations
    param_groups(ctx)        parameter groups with their own settings
                             (e.g. DPP's mask logits with their own learning rate)
    -- for every batch --
    before_forward(ctx)      resample a stochastic mask, set a temperature,
                             ask a mask to keep the dense gradient
    -- loss = ctx.task.loss(model, ctx.batch) --
    extra_loss(ctx)          a term added to the loss (a regulariser)
    -- loss.backward() --
    after_backward(ctx)      edit gradients before the step (an L1 subgradient),
                             read dense gradients; may set ``ctx.skip_step``
    -- optimizer.step() --
    after_step(ctx)          re-zero pruned weights, update masks, reset
                             optimizer state of regrown weights
    -- at the end of every epoch --
    on_evaluate(ctx)         named numbers to log into ``History.metrics``

A plain function ``hook(model, step)`` also works: it runs as ``after_step``
(that is all the chapters on pruning after training need). Subclass
:class:`Hook` and override only the phases you need::

    class GradientNorm(Hook):  # the norm of the whole gradient, logged once per epoch

        def after_backward(self, ctx: TrainContext) -> None:
            grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
            self.last = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

        def on_evaluate(self, ctx: TrainContext) -> dict[str, float]:
            return {"gradient norm": self.last}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from course_lib.training.tasks import CLASSIFICATION, Task

if TYPE_CHECKING:
    from course_lib.data import DataSplits
    from course_lib.training.config import TrainConfig
    from course_lib.training.history import History

StepFunction = Callable[[nn.Module, int], None]


@dataclass
class TrainContext:
    """What a hook can see (and change) while ``train`` runs.

    ``step`` counts the optimizer steps *completed*: it is 0 in
    ``before_forward`` of the first batch and 1 in that batch's ``after_step``.
    ``optimizer`` and ``scheduler`` are ``None`` in ``on_start`` and ``param_groups``.
    ``task`` is what the model learns (:mod:`course_lib.training.tasks`): the
    batch's loss is ``task.loss(model, batch)``, and a hook that needs the loss
    of its own forward pass (or a validation score) asks the task for it.
    """

    model: nn.Module
    data: DataSplits
    config: TrainConfig
    device: torch.device
    history: History
    steps_per_epoch: int
    total_steps: int
    task: Task = CLASSIFICATION
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    step: int = 0
    epoch: int = 0
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    loss: torch.Tensor | None = None
    skip_step: bool = False  # set in after_backward to leave this batch's weights as they are
    extras: dict[str, Any] = field(default_factory=dict)  # anything hooks want to share

    @property
    def progress(self) -> float:
        """Fraction of the run's steps completed, in [0, 1]."""
        return self.step / self.total_steps


class Hook:
    """Base class of training hooks: every phase does nothing until a subclass overrides it."""

    def on_start(self, ctx: TrainContext) -> None:
        """Once, before the optimizer is built."""

    def param_groups(self, ctx: TrainContext) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (dicts with ``params`` and settings such as ``lr``)."""
        return []

    def before_forward(self, ctx: TrainContext) -> None:
        """Before each batch's forward pass (``ctx.batch`` is set)."""

    def extra_loss(self, ctx: TrainContext) -> torch.Tensor | None:
        """A term to add to this batch's loss, or ``None``."""
        return None

    def after_backward(self, ctx: TrainContext) -> None:
        """After ``loss.backward()``, before ``optimizer.step()``; gradients are in ``.grad``."""

    def after_step(self, ctx: TrainContext) -> None:
        """After ``optimizer.step()`` (or after the skipped step)."""

    def on_evaluate(self, ctx: TrainContext) -> dict[str, float]:
        """At the end of each epoch: named numbers to append to ``History.metrics``."""
        return {}


class AfterStep(Hook):
    """Wraps a plain ``fn(model, step)`` as an ``after_step`` hook."""

    def __init__(self, fn: StepFunction) -> None:
        self.fn = fn

    def after_step(self, ctx: TrainContext) -> None:
        self.fn(ctx.model, ctx.step)

    def __repr__(self) -> str:
        return f"AfterStep({getattr(self.fn, '__name__', self.fn)!r})"


def as_hooks(hooks: Sequence[Hook | StepFunction]) -> list[Hook]:
    """Hooks as :class:`Hook` objects; plain functions become :class:`AfterStep` hooks."""
    result = []
    for hook in hooks:
        if isinstance(hook, Hook):
            result.append(hook)
        elif callable(hook):
            result.append(AfterStep(hook))
        else:
            raise TypeError(f"A training hook must be a Hook or a function fn(model, step); got {type(hook).__name__}.")
    return result
