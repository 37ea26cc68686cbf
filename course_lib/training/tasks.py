"""Tasks: what the one training loop minimises, and how it scores a model.

:func:`course_lib.training.train` does not know whether it trains an image
classifier or a language model. It asks its *task* two questions::

    loss  = task.loss(model, batch)      # the number to minimise on one batch
    score = task.score(model, data.val)  # the validation metric, once per epoch

and reads two facts: ``task.metric_name`` (what the score is called) and
``task.higher_is_better`` (accuracy: yes; a loss: no), which decides the best
epoch and the early-stopping step. Everything else - hooks, masks, the
optimizer, the schedule, the cache - is the same for every task.

* :class:`Classification` (the default): a batch is ``(images, labels)``,
  the model gives one score per class; cross-entropy, accuracy in percent.
* :class:`NextToken`: language modelling. A batch is ``(x, y)``, two
  ``[B, T]`` tensors of token ids where ``y`` is ``x`` shifted by one
  (``y[:, t]`` is the token that follows ``x[:, t]``); the model gives
  ``[B, T, V]`` scores (logits) over a vocabulary of ``V`` tokens at every
  position. Cross-entropy averaged over all ``B * T`` positions; its
  validation value, in nats per token, is the metric.

A new task is a subclass that sets ``metric_name`` and ``higher_is_better``
and implements ``loss`` and ``score``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import batches
from course_lib.devices import model_device


@torch.no_grad()
def predict(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
            device: torch.device | None = None) -> torch.Tensor:
    """Predicted class of every image in ``dataset`` (in eval mode), on the CPU.

    The images go to ``device`` (default: wherever the model is).
    """
    device = device or model_device(model)
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


class Task:
    """What a model learns: the loss of one batch and the score on a dataset.

    Attributes:
        metric_name: what :meth:`score` returns; ``History.metric_name`` and the
            progress bar (``val_<metric_name>``) show it.
        higher_is_better: whether a larger score is a better model (accuracy)
            or a smaller one (a loss); the best epoch and the early-stopping
            step follow it.
    """

    metric_name: str = "score"
    higher_is_better: bool = True

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The loss to minimise on ``batch``: a 0-dimensional tensor with a gradient (model in train mode)."""
        raise NotImplementedError

    def score(self, model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
              device: torch.device | None = None) -> float:
        """The validation metric of ``model`` on ``dataset`` (computed in eval mode, without gradients).

        The data go to ``device`` (default: wherever the model is).
        """
        raise NotImplementedError

    def format_score(self, score: float) -> str:
        """``score`` as the progress bar shows it."""
        return f"{score:.3f}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Classification(Task):
    """One label per input: cross-entropy loss, accuracy in percent (higher is better).

    A batch is ``(x, y)``: inputs of any shape ``[B, ...]`` and ``B`` class
    indices; the model returns ``[B, C]`` scores (logits) over ``C`` classes.
    """

    metric_name = "acc"
    higher_is_better = True

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        if logits.dim() != 2 or y.shape != logits.shape[:1]:
            raise ValueError(
                f"Classification needs logits of shape [B, classes] and labels of shape [B]; the model gave "
                f"{_shape(logits)} for labels of shape {_shape(y)}. A language model (logits [B, T, vocab], "
                "targets [B, T]) trains with train(..., task=NextToken()).")
        return nn.functional.cross_entropy(logits, y)

    def score(self, model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
              device: torch.device | None = None) -> float:
        """Accuracy in percent (:func:`evaluate`)."""
        return evaluate(model, dataset, batch_size, device)

    def format_score(self, score: float) -> str:
        return f"{score:.1f}%"


class NextToken(Task):
    """Language modelling: predict every next token; the metric is the validation loss in nats per token.

    A batch is ``(x, y)``, both ``[B, T]`` integer token ids, ``y[:, t]`` the
    token after ``x[:, t]``. The model maps ``x`` to logits ``[B, T, V]``. The
    loss is the cross-entropy averaged over all ``B * T`` positions, in nats
    (natural log). Lower is better: a model that guesses uniformly among ``V``
    tokens scores ``log(V)``, a perfect one 0. ``exp(score)`` is the
    *perplexity*: the number of tokens the model is, on average, as unsure
    between as if it guessed uniformly.
    """

    metric_name = "nats_per_token"
    higher_is_better = False

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self._logits(model, x, y)
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    @torch.no_grad()
    def score(self, model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
              device: torch.device | None = None) -> float:
        """Mean cross-entropy per token on ``dataset``, in nats (every token counts once)."""
        device = device or model_device(model)
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for x, y in batches(dataset, batch_size):
            x, y = x.to(device), y.to(device)
            logits = self._logits(model, x, y)
            total += nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            tokens += y.numel()
        model.train(was_training)
        return total / tokens

    @staticmethod
    def _logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``model(x)``, after checking that the batch and the logits have the shapes a language model needs."""
        if x.dim() != 2 or y.shape != x.shape or x.is_floating_point() or y.is_floating_point():
            raise ValueError(
                f"NextToken needs a batch (x, y) of integer token ids, both of shape [B, T]; got x {_shape(x)} "
                f"{x.dtype} and y {_shape(y)} {y.dtype}. Image batches (images, labels) train with the default "
                "task, Classification().")
        logits = model(x)
        if logits.dim() != 3 or logits.shape[:2] != x.shape:
            raise ValueError(f"NextToken needs the model to map tokens [B, T] = {_shape(x)} to logits "
                             f"[B, T, vocab]; it returned {_shape(logits)}.")
        return logits


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


CLASSIFICATION = Classification()  # the default task of train()
