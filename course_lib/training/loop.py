"""The one training loop of the course, seeded, with progress bars and hooks.

``train`` serves every chapter. Methods change what happens around each
step through hooks (see :mod:`course_lib.training.hooks`), never by copying
the loop. What is learned - classes of images, the next token of a text -
is the *task* (see :mod:`course_lib.training.tasks`): it says what the loss
of a batch is and how to score the model on the validation split. One step,
with the hook phases in their places::

    hooks: before_forward
    loss = task.loss(model, batch) + sum of hooks' extra_loss
                                     (Classification: cross_entropy(model(x), y))
    loss.backward()
    hooks: after_backward            (may set ctx.skip_step)
    optimizer.step()                 (unless skipped)
    scheduler.step(); step += 1
    hooks: after_step

and at the end of every epoch ``task.score(model, data.val)`` is recorded in
the :class:`History`.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from course_lib.data import DataSplits, batches
from course_lib.devices import default_device, model_device
from course_lib.profiles import shifted_seed
from course_lib.training.config import TrainConfig, make_optimizer, make_scheduler, steps_per_epoch
from course_lib.training.history import History
from course_lib.training.hooks import Hook, StepFunction, TrainContext, as_hooks
from course_lib.training.tasks import CLASSIFICATION, Task, evaluate, predict

__all__ = ["History", "default_device", "evaluate", "model_device", "predict", "recalibrate_batchnorm",
           "seed_everything", "train"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run can be repeated exactly.

    The seed is shifted by ``COURSE_SEED`` (see :func:`course_lib.profiles.shifted_seed`).
    """
    seed = shifted_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: TensorDataset, num_images: int = 5_000,
                          batch_size: int = 250) -> None:
    """Re-estimate every BatchNorm's running mean and variance from ``num_images`` training images.

    Training updates the running statistics with a moving average of what
    each batch looked like. If the network changed from batch to batch -
    a DPP mask sampled anew at every step switched a filter on in one batch
    and off in the next - those averages describe none of the networks it
    was, and evaluation (which uses them) suffers. After such a network is
    fixed, one pass over training images in train mode, without gradients,
    gives it statistics of its own (a plain average over the pass).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device, was_training = model_device(model), model.training
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: a cumulative average over the pass
    model.train()
    images = dataset.tensors[0][:num_images]
    for start in range(0, len(images), batch_size):
        model(images[start:start + batch_size].to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def _fast_forward(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> None:
    """Advance the learning-rate schedule by ``steps`` without training (to resume mid-run)."""
    with warnings.catch_warnings():  # stepping the schedule before any optimizer step is intended here
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        for _ in range(steps):
            scheduler.step()


_OBSERVERS: list[Callable[[], Hook]] = []  # see observing()


@contextmanager
def observing(make_hook: Callable[[], Hook]) -> Iterator[list[Hook]]:
    """Inside the block, every call of :func:`train` also runs a fresh ``make_hook()``; yields the hooks made.

    For measuring code you did not write: the design challenge counts the
    training FLOPs of a student's design, whichever course functions it
    trains with, by observing every run with a
    :class:`~course_lib.sparse.tracking.MaskTracker`. An observer runs after
    the run's own hooks and must not change the training.
    """
    made: list[Hook] = []

    def make() -> Hook:
        hook = make_hook()
        made.append(hook)
        return hook

    _OBSERVERS.append(make)
    try:
        yield made
    finally:
        _OBSERVERS.remove(make)


def train(
    model: nn.Module,
    data: DataSplits,
    config: TrainConfig,
    *,
    hooks: Sequence[Hook | StepFunction] = (),
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "training",
    start_epoch: int = 0,
    stop_epoch: int | None = None,
    eval_every: int | None = None,
    task: Task = CLASSIFICATION,
) -> History:
    """Train ``model`` on ``data.train`` and record the validation metric (accuracy) each epoch.

    Args:
        model: trained in place.
        data: the splits; only ``train`` and ``val`` are touched (never ``test``).
        config: optimizer, schedule, budget (epochs or steps) and seed.
        hooks: :class:`~course_lib.training.hooks.Hook` objects, or plain
            functions ``fn(model, step)`` that run after every optimizer step
            (``step`` counts from 1), e.g. to re-apply masks.
        device: where to train (default: :func:`default_device`).
        progress: show a tqdm bar.
        desc: label of the progress bar.
        start_epoch: resume the schedule here: train epochs ``start_epoch``
            onwards with the learning rates (and data order) those epochs have
            in a full run. Rewinding to epoch k uses this.
        stop_epoch: stop after this epoch (default: the end of the budget), e.g.
            to get the weights theta_k after k epochs of a run.
        eval_every: also record the validation metric every this many steps
            (``History.eval_steps`` / ``eval_accuracy``, or ``eval_metric`` for a
            task other than classification), to find the early-stopping step.
        task: what the model learns: the loss of a batch and the validation
            metric (see :mod:`course_lib.training.tasks`). The default,
            :class:`~course_lib.training.tasks.Classification`, is cross-entropy
            and accuracy; ``NextToken()`` trains a language model.

    Returns:
        The :class:`History` of the run.
    """
    per_epoch = steps_per_epoch(len(data.train), config.batch_size)
    total_steps = config.total_steps(len(data.train))
    epochs = -(-total_steps // per_epoch)
    stop_epoch = epochs if stop_epoch is None else stop_epoch
    if not 0 <= start_epoch < stop_epoch <= epochs:
        raise ValueError(f"need 0 <= start_epoch < stop_epoch <= {epochs}, got {start_epoch}, {stop_epoch}.")
    device = device or default_device()
    hooks = as_hooks([*hooks, *(make() for make in _OBSERVERS)])
    seed_everything(config.seed)
    model.to(device).train()
    history = History(metric_name=task.metric_name, higher_is_better=task.higher_is_better)
    ctx = TrainContext(model=model, data=data, config=config, device=device, history=history,
                       steps_per_epoch=per_epoch, total_steps=total_steps, task=task, step=start_epoch * per_epoch)
    for hook in hooks:
        hook.on_start(ctx)
    model.to(device)  # a hook may have attached new masks or parameters
    ctx.optimizer = make_optimizer(model, config, [g for hook in hooks for g in hook.param_groups(ctx)])
    ctx.scheduler = make_scheduler(ctx.optimizer, config, total_steps)
    _fast_forward(ctx.scheduler, ctx.step)
    last_step = min(stop_epoch * per_epoch, total_steps)
    bar = tqdm(total=last_step - ctx.step, desc=desc, disable=not progress, leave=False)
    for epoch in range(start_epoch, stop_epoch):
        ctx.epoch = epoch
        started = time.perf_counter()
        running, seen = 0.0, 0
        history.lr.append(ctx.optimizer.param_groups[0]["lr"])
        for x, y in batches(data.train, config.batch_size, shuffle=True, seed=shifted_seed(config.seed) * 1000 + epoch):
            if ctx.step >= last_step:
                break
            ctx.batch = (x.to(device), y.to(device))
            _train_step(ctx, hooks)
            if eval_every and ctx.step % eval_every == 0:
                history.eval_steps.append(ctx.step)
                history.eval_scores.append(task.score(model, data.val, device=device))
                model.train()
            running += ctx.loss.item() * len(y)
            seen += len(y)
            bar.update(1)
        history.train_loss.append(running / seen)
        history.seconds.append(time.perf_counter() - started)
        history.val_scores.append(task.score(model, data.val, device=device))
        for hook in hooks:
            for name, value in hook.on_evaluate(ctx).items():
                history.metrics.setdefault(name, []).append(float(value))
        model.train()
        bar.set_postfix({"epoch": epoch + 1, "loss": f"{history.train_loss[-1]:.3f}",
                         f"val_{task.metric_name}": task.format_score(history.val_scores[-1])})
    bar.close()
    ctx.batch = ctx.loss = None
    history.steps = ctx.step
    model.eval()
    return history


def _train_step(ctx: TrainContext, hooks: list[Hook]) -> None:
    """One optimizer step on ``ctx.batch`` with every hook phase in its place."""
    assert ctx.optimizer is not None and ctx.scheduler is not None and ctx.batch is not None
    ctx.skip_step = False
    for hook in hooks:
        hook.before_forward(ctx)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss = ctx.task.loss(ctx.model, ctx.batch)
    for hook in hooks:
        extra = hook.extra_loss(ctx)
        if extra is not None:
            loss = loss + extra
    ctx.loss = loss.detach()
    loss.backward()
    for hook in hooks:
        hook.after_backward(ctx)
    if not ctx.skip_step:
        ctx.optimizer.step()
    ctx.scheduler.step()
    ctx.step += 1
    for hook in hooks:
        hook.after_step(ctx)
