"""Mask updaters (AGP, static, SET, RigL), layer densities, the hook phases they rely on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib.data import DataSplits
from course_lib.masks import get_masks, mask_layers, mask_sparsity
from course_lib.models import build_model
from course_lib.pruning.procedures import magnitude
from course_lib.masks import prunable_weights, trainable_tensor
from course_lib.pruning.slimming import BatchNormL1
from course_lib.sparse.densities import layer_densities, random_masks, raw_density
from course_lib.sparse.schedules import agp_sparsity, cosine_drop_fraction
from course_lib.sparse.tracking import MaskTracker
from course_lib.sparse.updaters import AGP, RigL, SET, Static
from course_lib.training import Hook, TrainConfig, TrainContext, train


def _toy_data(n: int = 256, seed: int = 0) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = (x[:, 0, 14, :14].sum(dim=1) > 0).long() + 2 * (x[:, 0, :14, 14].sum(dim=1) > 0).long()
    ds = TensorDataset(x, y)
    return DataSplits(ds, TensorDataset(x[:64], y[:64]), TensorDataset(x[:64], y[:64]),
                      tuple(str(i) for i in range(10)), "toy", 0)


class Recorder(Hook):
    """After every step: the non-zero count of every masked layer, and the masks."""

    def __init__(self) -> None:
        self.counts: list[dict[str, int]] = []
        self.masks: list[dict[str, torch.Tensor]] = []

    def after_step(self, ctx: TrainContext) -> None:
        masks = get_masks(ctx.model)
        self.counts.append({n: int(m.sum()) for n, m in masks.items()})
        self.masks.append(masks)
        for name, mask in masks.items():  # the zero guarantee holds after every step, updates included
            weight = ctx.model.get_submodule(name.rpartition(".")[0]).weight
            assert torch.all(weight[mask == 0] == 0), f"{name}: a pruned weight is not zero at step {ctx.step}"


@pytest.mark.parametrize("method", [SET, RigL])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_drop_and_grow_keeps_every_layers_count_and_moves_the_mask(method, optimizer):
    model = build_model("lenet300")
    updater = method(sparsity=0.9, distribution="erk", update_every=4, drop_fraction=0.3)
    recorder = Recorder()
    config = TrainConfig(epochs=4, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, batch_size=32)
    train(model, _toy_data(), config, hooks=[updater, recorder], progress=False, device=torch.device("cpu"))
    first = recorder.counts[0]
    assert all(counts == first for counts in recorder.counts), "a layer's number of weights changed"
    assert len(updater.history) >= 5
    moved = sum(int((recorder.masks[0][n] != recorder.masks[-1][n]).sum()) for n in first)
    assert moved > 0, "the mask never moved"
    assert updater.history[0][1] == pytest.approx(cosine_drop_fraction(4, 0.3, 0, updater.end_step))
    assert mask_sparsity(get_masks(model)) == pytest.approx(0.9, abs=0.002)


def test_static_sparse_training_never_moves():
    model = build_model("lenet300")
    recorder = Recorder()
    train(model, _toy_data(), TrainConfig(epochs=2, batch_size=32), hooks=[Static(0.9, update_every=2), recorder],
          progress=False, device=torch.device("cpu"))
    assert all(torch.equal(m, recorder.masks[0][n]) for masks in recorder.masks for n, m in masks.items())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_regrown_weights_start_at_zero_with_zero_optimizer_state(optimizer):
    model = build_model("lenet300")
    rigl = RigL(sparsity=0.8, distribution="uniform", update_every=6, drop_fraction=0.5)
    masks_at = {}

    class Spy(Hook):
        def after_backward(self, ctx):  # runs before RigL's after_backward: the mask before the update
            if rigl.is_due(ctx.step + 1) and not masks_at:
                masks_at["before"] = {n: m.hard_mask().clone() for n, m in mask_layers(ctx.model).items()}

        def after_step(self, ctx):  # after RigL's update and the skipped step
            if "before" in masks_at and "after" not in masks_at:
                masks_at["after"] = True
                for name, old in masks_at["before"].items():
                    weight = trainable_tensor(ctx.model.get_submodule(name.rpartition(".")[0]))
                    grown = (mask_layers(ctx.model)[name].hard_mask() == 1) & (old == 0)
                    assert int(grown.sum()) > 0, f"{name}: nothing was grown"
                    assert torch.all(weight[grown] == 0), "grown weights must start at zero"
                    buffers = [v for v in ctx.optimizer.state[weight].values()
                               if torch.is_tensor(v) and v.shape == weight.shape]
                    assert buffers and all(torch.all(b[grown] == 0) for b in buffers), "grown weights kept state"
                    assert any(torch.any(b[old == 1] != 0) for b in buffers), "surviving weights lost their state"

    config = TrainConfig(epochs=2, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, batch_size=32)
    train(model, _toy_data(), config, hooks=[Spy(), rigl], progress=False, device=torch.device("cpu"))
    assert masks_at.get("after"), "no update happened"


def test_rigl_grows_where_the_dense_gradient_is_largest():
    seen = {}
    model = build_model("lenet300")
    rigl = RigL(sparsity=0.9, distribution="uniform", update_every=3, drop_fraction=0.2)

    class SpyFirst(Hook):  # runs before RigL in each phase: sees the dense gradient and the mask before the update
        def after_backward(self, ctx):
            if rigl.is_due(ctx.step + 1) and not seen:
                seen["grad"] = {n: m.dense_grad.clone() for n, m in mask_layers(ctx.model).items()}
                seen["mask"] = {n: m.hard_mask().clone() for n, m in mask_layers(ctx.model).items()}

        def after_step(self, ctx):
            if seen and "after" not in seen:
                seen["after"] = {n: m.hard_mask().clone() for n, m in mask_layers(ctx.model).items()}

    train(model, _toy_data(), TrainConfig(epochs=1, batch_size=32), hooks=[SpyFirst(), rigl], progress=False,
          device=torch.device("cpu"))
    for name, grad in seen["grad"].items():
        before, after = seen["mask"][name].bool(), seen["after"][name].bool()
        assert torch.any(grad[~before] != 0), "the dense gradient of pruned weights must not be zero"
        grown = after & ~before
        if grown.any():
            candidates = grad[~before].abs()
            k = int(grown.sum())
            threshold = candidates.topk(k).values.min()
            assert torch.all(grad[grown].abs() >= threshold - 1e-12)


def test_rigl_sums_the_dense_gradients_of_grad_batches_batches():
    grads: dict[int, dict[str, torch.Tensor]] = {}
    model = build_model("lenet300")
    rigl = RigL(sparsity=0.9, distribution="uniform", update_every=5, drop_fraction=0.2, grad_batches=3)
    tracker = MaskTracker(snapshot_every=5)

    class SpyFirst(Hook):  # sees each batch's dense gradient before RigL adds it up (or updates)
        def after_backward(self, ctx):
            if len(grads) < 3 and all(m.dense_grad is not None for m in mask_layers(ctx.model).values()):
                grads[ctx.step + 1] = {n: m.dense_grad.clone() for n, m in mask_layers(ctx.model).items()}
                if len(grads) == 3:
                    grads["mask"] = {n: m.hard_mask().clone() for n, m in mask_layers(ctx.model).items()}

        def after_step(self, ctx):
            if "mask" in grads and "after" not in grads:
                grads["after"] = {n: m.hard_mask().clone() for n, m in mask_layers(ctx.model).items()}

    train(model, _toy_data(), TrainConfig(epochs=1, batch_size=32), hooks=[SpyFirst(), rigl, tracker],
          progress=False, device=torch.device("cpu"))
    assert [k for k in grads if isinstance(k, int)] == [3, 4, 5], "the update at step 5 sums steps 3, 4 and 5"
    for name in grads["mask"]:
        before, after = grads["mask"][name].bool(), grads["after"][name].bool()
        score = (grads[3][name] + grads[4][name] + grads[5][name]).abs()
        grown = after & ~before
        assert grown.any()
        threshold = score[~before].topk(int(grown.sum())).values.min()
        assert torch.all(score[grown] >= threshold - 1e-12)
    assert tracker.trace.dense_weight_gradient_steps == 3 * len(rigl.history)
    with pytest.raises(ValueError, match="grad_batches"):
        RigL(sparsity=0.9, grad_batches=0)


def test_erk_densities_by_hand_and_on_budget():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 100))
    densities = layer_densities(model, 0.5, "erk")
    sizes = {"0.weight": 4 * 1 * 3 * 3, "2.weight": 100 * 2704}
    raw = {"0.weight": (4 + 1 + 3 + 3) / sizes["0.weight"], "2.weight": (100 + 2704) / sizes["2.weight"]}
    budget = 0.5 * sum(sizes.values())
    # By hand: eps = budget / sum(raw_i * n_i) makes the small convolution denser than dense (eps * raw > 1),
    # so it is made dense and eps is solved again over the Linear layer alone.
    assert budget / sum(raw[n] * sizes[n] for n in sizes) * raw["0.weight"] > 1
    eps = (budget - sizes["0.weight"]) / (raw["2.weight"] * sizes["2.weight"])
    assert densities["0.weight"] == 1.0
    assert densities["2.weight"] == pytest.approx(eps * raw["2.weight"])
    assert sum(densities[n] * sizes[n] for n in sizes) == pytest.approx(budget)
    assert raw_density((32, 16, 3, 3), "er") == pytest.approx((32 + 16) / (32 * 16))
    uniform = layer_densities(model, 0.5, "uniform")
    assert uniform == {"0.weight": 0.5, "2.weight": 0.5}


@pytest.mark.parametrize("distribution", ["uniform", "er", "erk"])
def test_random_masks_keep_the_global_density(distribution):
    model = build_model("lenet5")
    densities = layer_densities(model, 0.95, distribution)
    assert all(0 < d <= 1 for d in densities.values())
    masks = random_masks(model, densities, seed=1)
    assert mask_sparsity(masks) == pytest.approx(0.95, abs=0.001)
    assert set(masks) == set(prunable_weights(model))


def test_bad_density_requests_are_clear_errors():
    with pytest.raises(ValueError, match="fraction in"):
        layer_densities(build_model("lenet300"), 1.2)
    with pytest.raises(ValueError, match="distribution"):
        layer_densities(build_model("lenet300"), 0.9, "gaussian")


def test_agp_updater_raises_sparsity_on_the_cubic_schedule():
    model = build_model("lenet300")
    agp = AGP(magnitude("global"), 0.8, update_every=5, begin_step=0, end_step=20)
    recorder = Recorder()
    train(model, _toy_data(n=32 * 24), TrainConfig(epochs=1, batch_size=32), hooks=[agp, recorder], progress=False,
          device=torch.device("cpu"))
    total = sum(layer.weight.numel() for layer in prunable_weights(model).values())
    seen = [1 - sum(c.values()) / total if c else 0.0 for c in recorder.counts]
    assert [s for s, _ in agp.history] == [5, 10, 15, 20]
    assert seen[4] == pytest.approx(agp_sparsity(5, 0.8, 0, 20), abs=1e-4)
    assert seen[-1] == pytest.approx(0.8, abs=1e-4) and seen == sorted(seen)


def test_batchnorm_l1_changes_only_the_batchnorm_scales_gradients():
    grads = {}
    for strength in (0.0, 0.5):
        model = build_model("vgg")

        class Grab(Hook):
            def after_backward(self, ctx):
                if ctx.step == 0:
                    grads[strength] = {n: p.grad.clone() for n, p in ctx.model.named_parameters()}

        train(model, _toy_data(n=64), TrainConfig(epochs=1, batch_size=32), hooks=[BatchNormL1(strength), Grab()],
              progress=False, device=torch.device("cpu"))
    bn_scales = {f"{n}.weight" for n, m in build_model("vgg").named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bn_scales
    for name, grad in grads[0.0].items():
        diff = grads[0.5][name] - grad
        if name in bn_scales:
            gamma = build_model("vgg").get_parameter(name)
            assert torch.allclose(diff, 0.5 * torch.sign(gamma)), f"{name}: not lambda * sign(gamma)"
        else:
            assert torch.equal(diff, torch.zeros_like(diff)), f"{name} changed, but only BN scales should"


class _Scale(nn.Module):
    """A parametrization with a parameter of its own: weight * s."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(()))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.s


class _ScaleHook(Hook):
    """Registers the parametrization before the optimizer exists, then gives its parameter its own group."""

    def on_start(self, ctx):
        torch.nn.utils.parametrize.register_parametrization(ctx.model.get_submodule(self.layer), "weight", _Scale())

    def param_groups(self, ctx):
        return [{"params": [ctx.model.get_submodule(self.layer).parametrizations.weight[0].s], "lr": 0.05}]

    def extra_loss(self, ctx):
        return 0.01 * ctx.model.get_submodule(self.layer).parametrizations.weight[0].s ** 2

    def on_evaluate(self, ctx):
        return {"scale": float(ctx.model.get_submodule(self.layer).parametrizations.weight[0].s.detach())}


def test_an_extra_parameter_group_trains_with_its_own_learning_rate():
    model = build_model("lenet300")
    hook = _ScaleHook()
    hook.layer = next(iter(prunable_weights(model))).removesuffix(".weight")
    groups = {}

    class Peek(Hook):
        def after_step(self, ctx):
            groups["lrs"] = [g["lr"] for g in ctx.optimizer.param_groups]
            groups["sizes"] = [len(g["params"]) for g in ctx.optimizer.param_groups]

    history = train(model, _toy_data(), TrainConfig(epochs=2, batch_size=32, schedule="constant"),
                    hooks=[hook, Peek()], progress=False, device=torch.device("cpu"))
    assert groups["lrs"] == [1e-3, 0.05]
    assert groups["sizes"][1] == 1 and groups["sizes"][0] == len(list(model.parameters())) - 1
    assert len(history.metrics["scale"]) == 2 and history.metrics["scale"][-1] != 1.0


def test_a_budget_in_steps_stops_mid_epoch_and_keeps_the_schedule_fractions():
    data = _toy_data(n=320)  # 10 steps per epoch at batch 32
    config = TrainConfig(epochs=1, batch_size=32, schedule="step").scaled(2.5, len(data.train))
    assert config.steps == 25 and config.epochs == 3
    lrs = []

    class LR(Hook):
        def after_step(self, ctx):
            lrs.append(ctx.optimizer.param_groups[0]["lr"])

    history = train(build_model("lenet300"), data, config, hooks=[LR()], progress=False, device=torch.device("cpu"))
    assert history.steps == 25 and len(history.val_accuracy) == 3
    # milestones at 50 % and 75 % of 25 steps: x0.1 after step 12 and again after step 18
    assert math.isclose(lrs[10], 1e-3) and math.isclose(lrs[11], 1e-4) and math.isclose(lrs[17], 1e-5)


def test_lowest_picks_the_same_set_as_a_stable_sort_ties_included():
    from course_lib.sparse.updaters import _lowest

    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(1, 200, (1,), generator=g))
        k = int(torch.randint(1, n + 1, (1,), generator=g))
        scores = torch.randint(0, 5, (n,), generator=g).float()  # many ties
        if trial % 3 == 0:
            scores[torch.rand(n, generator=g) < 0.5] = torch.inf  # inactive weights, as the drop step marks them
        expected = set(torch.argsort(scores, stable=True)[:k].tolist())
        got = _lowest(scores, k).tolist()
        assert len(got) == k and set(got) == expected, f"n={n}, k={k}: not the k lowest with ties to the lower index"
