"""Tasks: a language model trains through the same loop, hooks and masks as the classifiers."""

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib import costs
from course_lib.data import DataSplits
from course_lib.masks import apply_masks, get_masks, zero_pruned_weights
from course_lib.models import MODELS, build_model, input_shape_of
from course_lib.training import (CLASSIFICATION, Classification, History, Hook, NextToken, TrainConfig, TrainContext,
                                 train)

VOCAB, CONTEXT = 12, 8


def next_token(t: torch.Tensor) -> torch.Tensor:
    """The rule of the synthetic language: each token determines the next one (5 is coprime to 12: a permutation)."""
    return (5 * t + 1) % VOCAB


def token_splits(seed: int = 0) -> DataSplits:
    """Sequences that follow :func:`next_token` from a random first token; y is x shifted by one token."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorDataset:
        sequence = [torch.randint(0, VOCAB, (n,), generator=generator)]
        for _ in range(CONTEXT):
            sequence.append(next_token(sequence[-1]))
        tokens = torch.stack(sequence, dim=1)  # [n, CONTEXT + 1]
        return TensorDataset(tokens[:, :-1], tokens[:, 1:])

    return DataSplits(split(512), split(128), split(128), tuple(f"token {k}" for k in range(VOCAB)), "next-token", seed)


class TinyTokenModel(nn.Module):
    """Embedding + Linear: logits for the next token from the current one alone (a bigram model)."""

    input_shape = (CONTEXT,)

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.out = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens))  # [B, T] -> [B, T, VOCAB]


def tiny_token_model(seed: int = 0) -> TinyTokenModel:
    torch.manual_seed(seed)
    return TinyTokenModel()


CONFIG = TrainConfig(epochs=3, lr=5e-2, batch_size=64)


def test_a_language_model_trains_through_train_and_its_validation_loss_falls():
    data, model = token_splits(), tiny_token_model()
    before = NextToken().score(model, data.val)
    history = train(model, data, CONFIG, task=NextToken(), progress=False, eval_every=4)
    assert before == pytest.approx(math.log(VOCAB), abs=0.5), "an untrained model is about as unsure as a uniform guess"
    assert history.metric_name == "nats_per_token" and not history.higher_is_better
    assert history.val_accuracy == [] and history.eval_accuracy == [], "no accuracy for a language model"
    assert len(history.val_metric) == len(history.train_loss) == 3 and history.val_scores is history.val_metric
    assert history.val_metric[-1] < 0.2 * math.log(VOCAB)
    assert history.val_metric[-1] == pytest.approx(NextToken().score(model, data.val))
    assert history.best_epoch == 3, "lower is better: the best epoch has the lowest loss"
    assert history.eval_steps == list(range(4, 25, 4)) and len(history.eval_metric) == 6
    assert history.early_stopping_step == history.eval_steps[history.eval_metric.index(min(history.eval_metric))]


class _RecordTask(Hook):
    def __init__(self) -> None:
        self.tasks: list[object] = []

    def before_forward(self, ctx: TrainContext) -> None:
        self.tasks.append(ctx.task)


def test_a_masked_language_model_keeps_its_pruned_weights_at_zero():
    data, model = token_splits(), tiny_token_model()
    mask = (torch.arange(VOCAB * 16).reshape(VOCAB, 16) % 4 != 0).float()  # prune a quarter of the output weights
    apply_masks(model, {"out.weight": mask})
    task, seen = NextToken(), _RecordTask()
    history = train(model, data, CONFIG, task=task, hooks=[seen, zero_pruned_weights], progress=False)
    assert seen.tasks and all(t is task for t in seen.tasks), "hooks see the run's task in ctx.task"
    assert torch.equal(get_masks(model)["out.weight"], mask)
    stored = model.out.parametrizations.weight.original
    assert torch.all(stored[mask == 0] == 0) and torch.all(model.out.weight[mask == 0] == 0)
    assert torch.count_nonzero(stored[mask == 1]) == int(mask.sum()), "the kept weights trained"
    assert history.val_metric[-1] < 0.5 * math.log(VOCAB)


def test_the_default_task_is_classification_bit_for_bit(tiny_splits):
    config = TrainConfig(epochs=2, batch_size=16, seed=3)
    runs = []
    for task in ({}, {"task": Classification()}):
        model = build_model("lenet5", seed=1)
        history = train(model, tiny_splits, config, progress=False, eval_every=3, **task)
        runs.append((model, dataclasses.replace(history, seconds=[])))
    (a, history_a), (b, history_b) = runs
    assert history_a == history_b and history_a.val_metric == [] and len(history_a.val_accuracy) == 2
    assert history_a.metric_name == CLASSIFICATION.metric_name and history_a.higher_is_better
    assert history_a.val_scores is history_a.val_accuracy
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_history_picks_the_best_epoch_the_metric_s_way():
    accuracy = History(val_accuracy=[80.0, 90.0, 90.0, 85.0])
    loss = History(val_metric=[2.0, 0.5, 0.5, 1.0], metric_name="nats_per_token", higher_is_better=False)
    assert accuracy.best_epoch == 2 and loss.best_epoch == 2  # the earliest of the ties
    assert History(**dataclasses.asdict(loss)).best_epoch == 2, "a History saved and loaded keeps its direction"


def test_image_batches_for_a_language_task_are_refused_with_a_reason(tiny_splits):
    with pytest.raises(ValueError, match=r"NextToken needs a batch \(x, y\) of integer token ids.*Classification"):
        train(build_model("lenet300"), tiny_splits, TrainConfig(epochs=1), task=NextToken(), progress=False)


def test_a_language_model_without_its_task_is_refused_with_a_reason():
    with pytest.raises(ValueError, match=r"Classification needs logits of shape \[B, classes\].*task=NextToken\(\)"):
        train(tiny_token_model(), token_splits(), CONFIG, progress=False)


def test_logits_of_the_wrong_shape_are_refused_with_a_reason():
    class LastTokenOnly(TinyTokenModel):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return super().forward(tokens)[:, -1]  # [B, VOCAB]: one prediction per sequence

    with pytest.raises(ValueError, match=r"logits \[B, T, vocab\]; it returned \[64, 12\]"):
        train(LastTokenOnly(), token_splits(), CONFIG, task=NextToken(), progress=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_course_model_knows_its_input_shape(name):
    model = build_model(name)
    assert input_shape_of(model) == (1, 28, 28) and model(torch.zeros(2, *input_shape_of(model))).shape == (2, 10)


def test_input_shape_of_prefers_the_shape_given_and_says_what_to_pass_without_one():
    assert input_shape_of(tiny_token_model()) == (CONTEXT,)
    assert input_shape_of(build_model("lenet300"), (784,)) == (784,)
    with pytest.raises(ValueError, match=r"Linear has no input_shape attribute.*pass input_shape=\(\.\.\.\)"):
        input_shape_of(nn.Linear(784, 10))
    with pytest.raises(ValueError, match="input_shape="):
        costs.layer_costs(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    assert costs.layer_costs(build_model("lenet300")).macs.sum() == 266_200  # its own (1, 28, 28)
