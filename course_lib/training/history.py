"""What a training run leaves behind: its :class:`History`, one entry per epoch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from course_lib.training.tasks import CLASSIFICATION


@dataclass
class History:
    """What happened during training, one entry per epoch (the last one may be partial).

    The validation metric is the task's (:mod:`course_lib.training.tasks`).
    Classification records its accuracy in percent in ``val_accuracy`` (and
    ``eval_accuracy``), as every chapter reads it; a task with another metric
    (another ``metric_name``) records it in ``val_metric`` (and ``eval_metric``)
    and leaves the accuracy lists empty. ``val_scores`` and ``eval_scores``
    are whichever of the two the run filled; ``best_epoch`` and
    ``early_stopping_step`` read them the task's way (``higher_is_better``).

    ``metrics`` holds what hooks report in ``on_evaluate``, one list per name.
    """

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: int = 0
    eval_steps: list[int] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    metric_name: str = CLASSIFICATION.metric_name
    higher_is_better: bool = True
    val_metric: list[float] = field(default_factory=list)
    eval_metric: list[float] = field(default_factory=list)

    @property
    def val_scores(self) -> list[float]:
        """The task's validation metric per epoch: ``val_accuracy`` for classification, else ``val_metric``."""
        return self.val_accuracy if self.metric_name == CLASSIFICATION.metric_name else self.val_metric

    @property
    def eval_scores(self) -> list[float]:
        """The task's metric at each of ``eval_steps``: ``eval_accuracy`` for classification, else ``eval_metric``."""
        return self.eval_accuracy if self.metric_name == CLASSIFICATION.metric_name else self.eval_metric

    def _best(self, scores: list[float]) -> int:
        """Index of the best score: the highest or, when lower is better, the lowest (earliest on ties)."""
        return int(np.argmax(scores) if self.higher_is_better else np.argmin(scores))

    @property
    def early_stopping_step(self) -> int:
        """Step with the best validation metric among the ``eval_every`` checks (earliest on ties)."""
        if not self.eval_steps:
            raise ValueError("No step-wise validation was recorded: train with eval_every=N.")
        return self.eval_steps[self._best(self.eval_scores)]

    @property
    def best_epoch(self) -> int:
        """1-based epoch with the best validation metric, e.g. the highest accuracy (earliest on ties)."""
        return self._best(self.val_scores) + 1
