"""What a training run is: its configuration, budget, optimizer and learning-rate schedule.

A :class:`TrainConfig` holds everything that determines a run (and so its
cache key). The training *budget* is given in epochs, or - when a method
needs a budget that is not a whole number of epochs, as Scratch-B does
(``epochs x dense MACs / pruned MACs``) - in optimizer steps:

    steps_per_epoch = ceil(training images / batch size)
    total_steps     = config.steps  or  config.epochs * steps_per_epoch

The learning-rate schedule is defined on steps, so its milestones stay at
the same *fractions* of training whatever the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from course_lib.profiles import Profile

STEP_DECAY = 0.1  # the "step" schedule multiplies the learning rate by this at each of STEP_MILESTONES
STEP_MILESTONES = (0.5, 0.75)  # fractions of the run's steps where the "step" schedule decays


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and so its cache key).

    Attributes:
        epochs: passes over the training split.
        lr: peak learning rate.
        optimizer: ``"adam"`` or ``"sgd"`` (SGD uses ``momentum``).
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        batch_size: images per step.
        schedule: ``"constant"``, ``"cosine"`` (to zero over all steps) or
            ``"step"`` (x0.1 at 50 % and 75 % of the steps).
        seed: seeds the data order and any randomness in the model.
        steps: if given, train for exactly this many optimizer steps instead of
            ``epochs`` whole passes (the last epoch may then be partial).
    """

    epochs: int
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    seed: int = 0
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}.")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1 (or None to train whole epochs), got {self.steps}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}.")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'step', got {self.schedule!r}.")

    def total_steps(self, train_size: int) -> int:
        """Optimizer steps of the whole run on a training split of ``train_size`` images."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch(train_size, self.batch_size)

    def scaled(self, factor: float, train_size: int) -> TrainConfig:
        """The same run with ``factor`` times the training steps (e.g. Scratch-B's compute budget).

        ``epochs`` becomes the number of (possibly partial) passes that takes,
        rounded up, and ``steps`` the exact budget.
        """
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}.")
        steps = max(1, round(factor * self.total_steps(train_size)))
        return replace(self, epochs=math.ceil(steps / steps_per_epoch(train_size, self.batch_size)), steps=steps)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``train_size`` images: the last batch may be smaller."""
    if train_size < 1 or batch_size < 1:
        raise ValueError(f"need at least one image and a positive batch size, got {train_size} and {batch_size}.")
    return -(-train_size // batch_size)


def recipe(model_name: str, profile: Profile, **overrides: object) -> TrainConfig:
    """The course's standard training recipe for a model, with the profile's epochs.

    Adam with a cosine schedule trains all three course models well in few
    epochs; pass keyword arguments to change any field, e.g.
    ``recipe("lenet300", profile, lr=3e-3)``.
    """
    if model_name not in profile.epochs:
        raise ValueError(f"Profile {profile.name!r} has no epoch budget for {model_name!r}; "
                         f"it has {sorted(profile.epochs)}.")
    return TrainConfig(**{"epochs": profile.epochs[model_name], **overrides})  # type: ignore[arg-type]


def finetune_recipe(model_name: str, profile: Profile, **overrides: object) -> TrainConfig:
    """Retraining after pruning: the standard recipe with the profile's fine-tuning epochs.

    The learning rate restarts at its peak and decays again (cosine): pruned
    networks recover faster with a fresh schedule than at the final, tiny
    learning rate of the dense run (Renda et al. 2020 make the same point).
    """
    if model_name not in profile.finetune_epochs:
        raise ValueError(f"Profile {profile.name!r} has no fine-tuning budget for {model_name!r}; "
                         f"it has {sorted(profile.finetune_epochs)}.")
    return recipe(model_name, profile, **{"epochs": profile.finetune_epochs[model_name], **overrides})


def make_optimizer(model: nn.Module, config: TrainConfig,
                   extra_groups: Sequence[dict[str, Any]] = ()) -> torch.optim.Optimizer:
    """The optimizer named in ``config``.

    ``extra_groups`` are parameter groups with their own settings (e.g. DPP's
    mask logits with their own learning rate); their parameters are taken out
    of the default group, which holds every other parameter of the model.
    """
    claimed = {id(p) for group in extra_groups for p in group["params"]}
    default = [p for p in model.parameters() if id(p) not in claimed]
    groups = [{"params": default}, *({**g, "params": list(g["params"])} for g in extra_groups)]
    if config.optimizer == "adam":
        # The fused kernel does Adam's whole update in one pass per tensor. Besides being faster, it avoids a
        # trap of pruned networks: the step-by-step kernel's square root is several times slower on exact zeros,
        # and a masked weight's second moment is exactly zero wherever the mask is 0 (benchmarks/mask_overhead.py).
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A learning-rate schedule stepped once per optimizer step."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        milestones = [int(fraction * total_steps) for fraction in STEP_MILESTONES]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=STEP_DECAY)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
