"""Training: one seeded loop for every method, with hooks for what methods add.

* :mod:`~course_lib.training.config` - :class:`TrainConfig` (epochs or a
  budget in steps), the course's recipes, optimizer and learning-rate schedule;
* :mod:`~course_lib.training.hooks` - the phases a method can plug into;
* :mod:`~course_lib.training.tasks` - what is learned: the loss of a batch
  and the validation metric (:class:`Classification`, the default, with
  ``evaluate`` and ``predict``; :class:`NextToken` for language models);
* :mod:`~course_lib.training.loop` - ``train``.

The names below are the ones notebooks use: ``from course_lib.training import train, recipe``.
"""

from course_lib.training.config import (TrainConfig, finetune_recipe, make_optimizer, make_scheduler, recipe,
                                        steps_per_epoch)
from course_lib.training.hooks import AfterStep, Hook, StepFunction, TrainContext
from course_lib.training.history import History
from course_lib.training.loop import (default_device, evaluate, model_device, observing, predict,
                                      recalibrate_batchnorm, seed_everything, train)
from course_lib.training.tasks import CLASSIFICATION, Classification, NextToken, Task

__all__ = ["AfterStep", "CLASSIFICATION", "Classification", "History", "Hook", "NextToken", "StepFunction", "Task",
           "TrainConfig", "TrainContext", "default_device", "evaluate", "finetune_recipe", "make_optimizer",
           "make_scheduler", "model_device", "observing", "predict", "recalibrate_batchnorm", "recipe", "seed_everything",
           "steps_per_epoch", "train"]
