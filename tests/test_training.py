"""Training: determinism, step hooks, configuration errors, evaluation."""

import pytest
import torch

from course_lib.data import DataSplits
from course_lib.models import build_model
from course_lib.profiles import get_profile
from course_lib.training import TrainConfig, evaluate, recipe, train


def _subset(splits: DataSplits, n: int = 2000) -> DataSplits:
    take = lambda ds, k: torch.utils.data.TensorDataset(*(t[:k] for t in ds.tensors))
    return DataSplits(take(splits.train, n), take(splits.val, 500), take(splits.test, 500),
                      splits.classes, splits.name, splits.seed)


def test_same_seed_gives_the_same_weights_after_an_epoch(quick_splits):
    small = _subset(quick_splits)
    config = TrainConfig(epochs=1, seed=5)
    models = [build_model("lenet5", seed=1) for _ in range(3)]
    train(models[0], small, config, progress=False)
    train(models[1], small, config, progress=False)
    train(models[2], small, TrainConfig(epochs=1, seed=6), progress=False)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(models[0].parameters()), next(models[2].parameters()))


def test_training_learns_and_records_history(quick_splits):
    small = _subset(quick_splits)
    model = build_model("lenet300")
    before = evaluate(model, small.val)
    history = train(model, small, TrainConfig(epochs=2, lr=3e-3), progress=False)
    assert len(history.train_loss) == len(history.val_accuracy) == len(history.lr) == 2
    assert history.steps == 2 * 16  # 2000 images / 128 per batch = 16 steps per epoch
    assert history.train_loss[1] < history.train_loss[0]
    assert history.val_accuracy[-1] > before + 30
    assert 1 <= history.best_epoch <= 2


def test_hooks_run_after_every_optimizer_step(quick_splits):
    small = _subset(quick_splits, n=1000)
    seen = []

    def zero_first_weight(model, step):
        seen.append(step)
        with torch.no_grad():
            model.net[1].weight[0, 0] = 0.0

    model = build_model("lenet300")
    train(model, small, TrainConfig(epochs=1, optimizer="sgd", lr=0.1), hooks=[zero_first_weight], progress=False)
    assert seen == list(range(1, 9))
    assert model.net[1].weight[0, 0].item() == 0.0


@pytest.mark.parametrize("bad, message", [
    (dict(epochs=0), "epochs"), (dict(epochs=1, lr=-1.0), "lr"),
    (dict(epochs=1, optimizer="rmsprop"), "optimizer"), (dict(epochs=1, schedule="linear"), "schedule"),
])
def test_bad_config_is_refused_with_a_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_cosine_schedule_decays_to_zero(quick_splits):
    small = _subset(quick_splits, n=512)
    history = train(build_model("lenet300"), small, TrainConfig(epochs=4, lr=1e-2), progress=False)
    assert history.lr[0] == pytest.approx(1e-2) and history.lr == sorted(history.lr, reverse=True)


def test_recipe_takes_the_profiles_epochs():
    quick = get_profile("quick")
    assert recipe("lenet5", quick).epochs == quick.epochs["lenet5"]
    assert recipe("lenet5", quick, lr=0.01).lr == 0.01
    with pytest.raises(ValueError, match="epoch budget"):
        recipe("resnet", quick)
