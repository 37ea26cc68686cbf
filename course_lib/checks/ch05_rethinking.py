"""The checks of exercise 5: rethinking pruning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from course_lib.pruning import rethinking, selection, slimming
from course_lib.training import Hook, TrainConfig, TrainContext, steps_per_epoch
from course_lib.models import build_model
from course_lib.checks.base import fail, ok


def check_scratch_b_config(scratch_b_config: Callable[[TrainConfig, int, int, int, float | None], TrainConfig]) -> None:
    """``scratch_b_config(config, train_size, dense_macs, pruned_macs, cap)``: the dense run's recipe, stretched to
    its compute in whole optimizer steps."""
    cases = [(TrainConfig(epochs=4, lr=0.1, optimizer="sgd", schedule="step"), 6_000, 510_912, 142_560, None),
             (TrainConfig(epochs=2, batch_size=100), 1_000, 4_000, 1_000, 2.0),
             (TrainConfig(epochs=3, batch_size=128, schedule="step"), 12_000, 300_000, 290_000, None),
             (TrainConfig(epochs=5, batch_size=64), 640, 300, 200, 2.0)]
    for config, train_size, dense, pruned, cap in cases:
        factor = rethinking.scratch_b_factor(dense, pruned, cap)
        expected = config.scaled(factor, train_size)
        where = (f"{config.epochs} epochs of {train_size:,} images in batches of {config.batch_size}, "
                 f"dense {dense:,} / pruned {pruned:,} MACs" + (f", cap {cap}" if cap else ""))
        got = scratch_b_config(config, train_size, dense, pruned, cap)
        if not isinstance(got, TrainConfig):
            fail(f"return a TrainConfig (dataclasses.replace(config, ...)), not {type(got).__name__}.")
        per_epoch = steps_per_epoch(train_size, config.batch_size)
        if got.steps is None:
            fail(f"{where}: set `steps`. The budget is {expected.steps} steps, {expected.steps / per_epoch:.2f} "
                 "epochs: whole epochs would round it away (epochs alone train every step of every epoch).")
        if got.steps != expected.steps:
            if got.steps == round(config.epochs * factor) * per_epoch:
                fail(f"{where}: you rounded the EPOCHS ({config.epochs * factor:.3f} -> "
                     f"{round(config.epochs * factor)}) and then counted their steps ({got.steps}); round the "
                     f"STEPS instead: round(factor x dense steps) = {expected.steps}.")
            if got.steps == round(config.total_steps(train_size) / factor):
                fail(f"{where}: {got.steps} steps is fewer than the dense run's {config.total_steps(train_size)}: "
                     "the factor is upside down - the smaller network trains LONGER (dense MACs / pruned MACs).")
            fail(f"{where}: {got.steps} steps, expected {expected.steps} = round(factor x dense steps) with factor "
                 f"{factor:.4f} (dense / pruned MACs" + (f", at most {cap}" if cap else "") + ").")
        if got.epochs != expected.epochs:
            fail(f"{where}: epochs = {got.epochs}, expected {expected.epochs}: the passes over the data those "
                 f"{expected.steps} steps take, rounded UP (the last one is partial).")
        if replace(got, steps=None, epochs=1) != replace(config, steps=None, epochs=1):
            fail(f"{where}: only the budget changes; keep the rest of the recipe (optimizer, learning rate, schedule, "
                 "batch size, seed) - the schedule is defined on steps, so its milestones move with the budget.")
    ok("Scratch-B's budget in whole steps, epochs rounded up, the rest of the recipe kept")


def check_l1_proximal(make_hook: Callable[[float], Hook]) -> None:
    """``make_hook(strength)`` returns a Hook whose ``after_step`` soft-thresholds every BatchNorm scale:
    gamma <- sign(gamma) * max(|gamma| - lr * strength, 0), with the learning rate of gamma's parameter group."""
    _check_l1_proximal_on(make_hook, build_model("vgg", seed=3),
                          torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    mlp = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 8))
    _check_l1_proximal_on(make_hook, mlp, torch.randn(8, 12, generator=torch.Generator().manual_seed(1)))
    ok("the proximal L1 step shrinks every BatchNorm scale (2d and 1d) by lr x strength after the optimizer's step, "
       "stops at exactly zero, and leaves everything else alone")


def _check_l1_proximal_on(make_hook: Callable[[float], Hook], model: nn.Module, x: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # scales and shifts of both signs and many sizes, some within one shrink of zero
        for layer in model.modules():
            if isinstance(layer, selection.BATCHNORMS):
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 3 - 1.5)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=generator) * 2 - 1.0)
    scales = [m.weight for m in model.modules() if isinstance(m, selection.BATCHNORMS)]
    scale_ids = {id(p) for p in scales}
    # The scales get their own learning rate, in the SECOND group: the rate to use is the one of gamma's group.
    optimizer = torch.optim.SGD([{"params": [p for p in model.parameters() if id(p) not in scale_ids], "lr": 0.05},
                                 {"params": scales, "lr": 0.4}], momentum=0.9)
    torch.nn.functional.cross_entropy(model(x), torch.arange(8)).backward()
    optimizer.step()
    stepped = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    scale_names = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, selection.BATCHNORMS)}
    shift_names = {f"{name}.bias" for name, m in model.named_modules() if isinstance(m, selection.BATCHNORMS)}
    kinds = sorted({type(m).__name__ for m in model.modules() if isinstance(m, selection.BATCHNORMS)})
    hook = make_hook(0.25)
    if not isinstance(hook, Hook):
        fail(f"make_hook must return a course_lib.training.Hook (subclass it); got {type(hook).__name__}.")
    ctx = TrainContext(model=model, data=None, config=TrainConfig(epochs=1, lr=0.05, optimizer="sgd"),  # type: ignore[arg-type]
                       device=torch.device("cpu"),
                       history=None, steps_per_epoch=1, total_steps=1, optimizer=optimizer, step=1)  # type: ignore[arg-type]
    hook.after_step(ctx)
    if all(torch.equal(p.detach(), stepped[name]) for name, p in model.named_parameters()):
        fail(f"after_step left every parameter of a model with {' and '.join(kinds)} as the optimizer's step made "
             "it. The proximal step moves the scales themselves, AFTER optimizer.step() (the after_step phase), not "
             "their gradients; and every BatchNorm kind has scales - find them with isinstance(module, "
             "(nn.BatchNorm1d, nn.BatchNorm2d)).")
    for name, p in model.named_parameters():
        if not torch.equal(p.grad, grads[name]):
            fail(f"{name}: the hook changed a gradient. After the step gradients are spent; the proximal step "
                 "changes the scale gamma itself (under torch.no_grad()).")
        now, before = p.detach(), stepped[name]
        if name in shift_names and not torch.equal(now, before):
            fail(f"{name} changed: that is a BatchNorm SHIFT (beta, .bias). Network slimming penalises the scales "
                 "gamma (.weight) only: a channel is removed when its scale is zero, whatever its shift.")
        if name not in scale_names:
            if not torch.equal(now, before):
                fail(f"{name} changed: only the BatchNorm SCALES (gamma, the bn*.weight parameters) are shrunk; "
                     "leave convolutions, the classifier and the BN shifts (bias) alone.")
            continue
        def shrunk(by: float) -> bool:  # is `now` gamma soft-thresholded by `by`?
            return torch.allclose(now, torch.sign(before) * torch.clamp(before.abs() - by, min=0), atol=1e-6)

        if shrunk(0.4 * 0.25):
            continue
        if torch.equal(now, before):
            fail(f"{name} ({', '.join(kinds)}): this scale was not shrunk. Every BatchNorm layer's scale is - find "
                 "them with isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)).")
        if shrunk(0.25):
            fail(f"{name}: you shrank |gamma| by the strength alone; a proximal step shrinks by step size x "
                 "strength: the learning rate of gamma's parameter group times the strength.")
        if shrunk(0.05 * 0.25):
            fail(f"{name}: you used a learning rate of 0.05 (the config's, or another parameter group's); gamma's "
                 "group has its own (0.4 here), and a schedule changes it as training runs. Use the current rate of "
                 "the group whose 'params' hold gamma, in ctx.optimizer.param_groups.")
        if torch.allclose(now, before - 0.4 * 0.25 * torch.sign(before), atol=1e-6):
            fail(f"{name}: some scales crossed zero and changed sign. The proximal step stops at zero: "
                 "sign(gamma) * max(|gamma| - lr x strength, 0) - that is what makes scales EXACTLY zero.")
        expected = torch.sign(before) * torch.clamp(before.abs() - 0.4 * 0.25, min=0)
        fail(f"{name}: got {[round(v, 4) for v in now[:3].tolist()]}..., expected sign(gamma) * max(|gamma| - lr x "
             f"strength, 0) = {[round(v, 4) for v in expected[:3].tolist()]}... from gamma = "
             f"{[round(v, 4) for v in before[:3].tolist()]}... (lr 0.4, strength 0.25).")


def check_keep_channels(keep_channels: Callable[[dict, float, int], dict]) -> None:
    """``keep_channels(scales, prune_fraction, min_channels)``: one global threshold on |gamma|, with a per-layer floor."""
    g = torch.Generator().manual_seed(0)
    scales = {"net.conv1": torch.rand(8, generator=g), "net.conv2": torch.rand(16, generator=g) * 0.05,
              "net.conv3": torch.rand(32, generator=g) + 0.2}
    # A layer with two strong channels among weak ones: the floor must top it up, not only refill an empty layer.
    topped = {**scales, "net.conv2": torch.cat([scales["net.conv2"][:14], torch.tensor([0.9, 0.95])])}
    # 0.005 of 56 channels rounds to none: nothing is pruned (an index k - 1 = -1 would wrap to the largest |gamma|).
    for scales, fraction, floor in ((scales, 0.25, 1), (scales, 0.5, 2), (scales, 0.5, 4), (topped, 0.5, 4),
                                    (scales, 0.005, 1)):
        expected = slimming.slimming_keep(scales, slimming.global_threshold(scales, fraction), floor)
        got = keep_channels({k: v.clone() for k, v in scales.items()}, fraction, floor)
        total = sum(len(v) for v in scales.values())
        if round(fraction * total) == 0 and sum(int(torch.as_tensor(k).bool().sum()) for k in got.values()) < total:
            fail(f"prune_fraction={fraction}: round({fraction} x {total} channels) = 0 channels go, so every channel "
                 "stays; you removed some. With nothing to prune the threshold is below every |gamma| (-inf): "
                 "beware of indexing the sorted scales at k - 1 = -1, which is the LARGEST.")
        if set(got) != set(expected):
            fail(f"return one boolean tensor per layer, keyed like `scales` ({sorted(expected)}); got {sorted(got)}.")
        for layer in expected:
            kept, want = got[layer].bool(), expected[layer]
            if int(kept.sum()) < floor:
                fail(f"{layer} keeps {int(kept.sum())} channel(s) at prune_fraction={fraction}: keep at least "
                      f"min_channels={floor} (the layer's largest |gamma|) even when the global threshold removes more.")
            local = int(round((1 - fraction) * len(scales[layer])))
            if int(kept.sum()) == local and int(want.sum()) != local:
                fail(f"{layer} keeps {local} of {len(scales[layer])} channels: that is a per-layer (LOCAL) cut. Rank "
                      "all layers' |gamma| together and use ONE global threshold.")
            if not torch.equal(kept, want) and int(kept.sum()) == int(want.sum()):
                wrong = sorted(set(torch.nonzero(kept).flatten().tolist()) - set(torch.nonzero(want).flatten().tolist()))
                fail(f"{layer} at prune_fraction={fraction}, min_channels={floor}: the right NUMBER of channels "
                     f"({int(kept.sum())}) but not the right ones: you kept channel(s) {wrong}, whose |gamma| is not "
                     "among the largest. Keep the channels of largest |gamma| (compare absolute values).")
            if not torch.equal(kept, want):
                fail(f"{layer} at prune_fraction={fraction}, min_channels={floor}: you kept {int(kept.sum())} channels, "
                      f"expected {int(want.sum())} (|gamma| above the global threshold, or the layer's "
                      f"{floor} largest if fewer survive).")
    ok("one global |gamma| threshold, with a floor of channels per layer")
