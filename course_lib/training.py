"""Training and evaluation loops, seeded and with progress bars.

One ``train`` function serves every chapter. Pruning needs exactly one
extension point: code that runs *after every optimizer step* (to re-apply a
mask, so that momentum or Adam cannot bring a pruned weight back to life).
``train`` takes a list of such hooks; each is called as ``hook(model, step)``.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from course_lib.data import DataSplits, batches
from course_lib.profiles import Profile

StepHook = Callable[[nn.Module, int], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run can be repeated exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
    """

    epochs: int
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}.")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'step', got {self.schedule!r}.")


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


@dataclass
class History:
    """What happened during training, one entry per epoch."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: int = 0
    eval_steps: list[int] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)

    @property
    def early_stopping_step(self) -> int:
        """Step with the highest validation accuracy among the ``eval_every`` checks (earliest on ties)."""
        if not self.eval_steps:
            raise ValueError("No step-wise validation was recorded: train with eval_every=N.")
        return self.eval_steps[int(np.argmax(self.eval_accuracy))]

    @property
    def best_epoch(self) -> int:
        """1-based epoch with the highest validation accuracy (earliest on ties)."""
        return int(np.argmax(self.val_accuracy)) + 1


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named in ``config``, over all of the model's parameters."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A learning-rate schedule stepped once per optimizer step."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        milestones = [total_steps // 2, (3 * total_steps) // 4]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@torch.no_grad()
def predict(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
            device: torch.device | None = None) -> torch.Tensor:
    """Predicted class of every image in ``dataset`` (in eval mode), on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds = [model(x.to(device)).argmax(dim=1).cpu() for x, _ in batches(dataset, batch_size)]
    model.train(was_training)
    return torch.cat(preds)


def evaluate(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
             device: torch.device | None = None) -> float:
    """Accuracy in percent of ``model`` on ``dataset``."""
    labels = dataset.tensors[1]
    return 100.0 * (predict(model, dataset, batch_size, device) == labels).float().mean().item()


def train(
    model: nn.Module,
    data: DataSplits,
    config: TrainConfig,
    after_step: Sequence[StepHook] = (),
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "training",
    start_epoch: int = 0,
    stop_epoch: int | None = None,
    eval_every: int | None = None,
) -> History:
    """Train ``model`` on ``data.train`` and record validation accuracy each epoch.

    Args:
        model: trained in place.
        data: the splits; only ``train`` and ``val`` are touched (never ``test``).
        config: optimizer, schedule, epochs and seed.
        after_step: functions called as ``hook(model, step)`` after every
            optimizer step (``step`` counts from 1), e.g. to re-apply masks.
        device: where to train (default: :func:`default_device`).
        progress: show a tqdm bar.
        desc: label of the progress bar.
        start_epoch: resume the schedule here: train epochs ``start_epoch``
            to ``config.epochs`` with the learning rates (and data order) those
            epochs have in a full run. Rewinding to epoch k uses this.
        stop_epoch: stop after this epoch (default: ``config.epochs``), e.g. to
            get the weights theta_k after k epochs of a run.
        eval_every: also record validation accuracy every this many steps
            (``History.eval_steps`` / ``eval_accuracy``), to find the early-stopping step.

    Returns:
        The :class:`History` of the run.
    """
    stop_epoch = config.epochs if stop_epoch is None else stop_epoch
    if not 0 <= start_epoch < stop_epoch <= config.epochs:
        raise ValueError(f"need 0 <= start_epoch < stop_epoch <= {config.epochs}, got {start_epoch}, {stop_epoch}.")
    device = device or default_device()
    seed_everything(config.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    steps_per_epoch = -(-len(data.train) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, config, total_steps)
    step = start_epoch * steps_per_epoch
    with warnings.catch_warnings():  # fast-forwarding the schedule before any optimizer step is intended
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        for _ in range(step):
            scheduler.step()
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(total=(stop_epoch - start_epoch) * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    for epoch in range(start_epoch, stop_epoch):
        started = time.perf_counter()
        running, seen = 0.0, 0
        history.lr.append(optimizer.param_groups[0]["lr"])
        for x, y in batches(data.train, config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            for hook in after_step:
                hook(model, step)
            if eval_every and step % eval_every == 0:
                history.eval_steps.append(step)
                history.eval_accuracy.append(evaluate(model, data.val, device=device))
                model.train()
            running += loss.item() * len(y)
            seen += len(y)
            bar.update(1)
        history.train_loss.append(running / seen)
        history.seconds.append(time.perf_counter() - started)
        history.val_accuracy.append(evaluate(model, data.val, device=device))
        bar.set_postfix(epoch=epoch + 1, loss=f"{history.train_loss[-1]:.3f}",
                        val_acc=f"{history.val_accuracy[-1]:.1f}%")
    bar.close()
    history.steps = step
    model.eval()
    return history
