"""Training: determinism, step hooks, configuration errors, evaluation."""

import pytest
import torch

from course_lib.data import DataSplits
from course_lib.models import build_model
from course_lib.profiles import get_profile
from course_lib.training import Hook, TrainConfig, TrainContext, evaluate, recipe, train


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
            model.net.fc1.weight[0, 0] = 0.0

    model = build_model("lenet300")
    train(model, small, TrainConfig(epochs=1, optimizer="sgd", lr=0.1), hooks=[zero_first_weight], progress=False)
    assert seen == list(range(1, 9))
    assert model.net.fc1.weight[0, 0].item() == 0.0


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
        recipe("wideresnet", quick)


class _PhaseLog(Hook):
    """Records every phase call as (phase, step) and checks what each phase can see."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_start(self, ctx: TrainContext) -> None:
        assert ctx.optimizer is None, "on_start must run before the optimizer exists"
        self.calls.append(("on_start", ctx.step))

    def param_groups(self, ctx: TrainContext) -> list:
        self.calls.append(("param_groups", ctx.step))
        return []

    def before_forward(self, ctx: TrainContext) -> None:
        assert ctx.batch is not None and ctx.batch[0].device == ctx.device
        self.calls.append(("before_forward", ctx.step))

    def extra_loss(self, ctx: TrainContext) -> None:
        self.calls.append(("extra_loss", ctx.step))

    def after_backward(self, ctx: TrainContext) -> None:
        assert all(p.grad is not None for p in ctx.model.parameters()), "gradients must be there after backward"
        self.calls.append(("after_backward", ctx.step))
        ctx.skip_step = ctx.step == 1  # leave the second batch's weights alone

    def after_step(self, ctx: TrainContext) -> None:
        self.calls.append(("after_step", ctx.step))

    def on_evaluate(self, ctx: TrainContext) -> dict[str, float]:
        self.calls.append(("on_evaluate", ctx.step))
        return {"step": ctx.step}


def test_hook_phases_run_in_order_and_a_skipped_step_leaves_the_weights(quick_splits):
    small = _subset(quick_splits, n=256)  # 2 steps per epoch at batch 128
    log = _PhaseLog()
    weights = {}

    def after_first(model, step):
        if step in (1, 2):
            weights[step] = model.net.fc1.weight.detach().clone()

    history = train(build_model("lenet300"), small, TrainConfig(epochs=1), hooks=[log, after_first], progress=False)
    one_step = ["before_forward", "extra_loss", "after_backward", "after_step"]
    assert [phase for phase, _ in log.calls] == ["on_start", "param_groups", *one_step, *one_step, "on_evaluate"]
    assert [step for phase, step in log.calls if phase == "before_forward"] == [0, 1]
    assert [step for phase, step in log.calls if phase == "after_step"] == [1, 2]
    assert history.metrics["step"] == [2.0]
    assert torch.equal(weights[1], weights[2]), "a step skipped in after_backward must not move the weights"
