"""Benchmark: what do masks cost during training? LeNet-300-100, batch 128, Adam, on the CPU.

Ways to train the same network, timed per optimizer step in one run, all with
the course's optimizer (make_optimizer: Adam, fused kernel):
  * dense: no masks;
  * course masks: torch.nn.utils.parametrize (weight = original * mask at every
    forward) plus zero_pruned_weights after every step (what course_lib does);
  * course masks, step-by-step Adam: the same with Adam's default (foreach)
    kernel, whose square root is several times slower on exact zeros - and a
    masked weight's second moment is exactly zero under the mask (the reason
    make_optimizer asks for the fused kernel);
  * torch.nn.utils.prune: its forward pre-hook recomputes weight_orig * weight_mask;
  * RigL update step: one step on which RigL keeps the dense gradient and
    moves 30 % of every layer's weights (the cost of an update, paid every
    Delta T steps).
Target: course masks <= 1.10x the dense step. Ratios, not absolute times, are
comparable (this machine is noisy). Not a test.

Run:  .venv/bin/python benchmarks/mask_overhead.py
"""

from __future__ import annotations

import torch
import torch.nn.utils.prune as prune
from torch import nn

from course_lib.data import load_splits
from course_lib.masks import apply_masks, zero_pruned_weights
from course_lib.costs import prunable_layers, ratios_to_first, time_interleaved
from course_lib.models import build_model
from course_lib.pruning.procedures import finetune, magnitude, one_shot
from course_lib.profiles import get_profile
from course_lib.pruning.selection import unstructured_masks
from course_lib.sparse.updaters import RigL
from course_lib.training import History, TrainConfig, TrainContext, make_optimizer, train


def training_step(model: nn.Module, hooks=(), fused: bool = True):
    """One Adam step on a fixed random batch, as a function to time."""
    optimizer = (make_optimizer(model, TrainConfig(epochs=1)) if fused
                 else torch.optim.Adam(model.parameters(), lr=1e-3))
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        for hook in hooks:
            hook(model, 0)

    return step


def rigl_update_step(model: nn.Module):
    """One training step through the real loop's phases on which RigL updates every mask."""
    rigl = RigL(sparsity=0.9, distribution="erk", update_every=1, drop_fraction=0.3, end_fraction=1.0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    ctx = TrainContext(model=model, data=None, config=TrainConfig(epochs=1), device=torch.device("cpu"),  # type: ignore[arg-type]
                       history=History(), steps_per_epoch=10**6, total_steps=10**6, batch=(x, y))
    rigl.on_start(ctx)  # attaches the masks, before the optimizer exists, as in train()
    ctx.optimizer = make_optimizer(model, ctx.config)

    def step() -> None:
        ctx.step, ctx.skip_step = 1, False
        rigl.before_forward(ctx)
        ctx.optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        rigl.after_backward(ctx)  # the mask update (and no weight update)
        rigl.after_step(ctx)

    return step


def main() -> None:
    dense = build_model("lenet300")
    masks = unstructured_masks(dense, 0.9)
    ours = build_model("lenet300")
    apply_masks(ours, masks)
    unfused = build_model("lenet300")
    apply_masks(unfused, masks)
    theirs = build_model("lenet300")
    for name, layer in prunable_layers(theirs).items():
        prune.custom_from_mask(layer, "weight", masks[f"{name}.weight"])
    results = time_interleaved({"dense": training_step(dense),
                                "course masks (parametrize + re-zero)": training_step(ours, [zero_pruned_weights]),
                                "course masks, step-by-step Adam": training_step(unfused, [zero_pruned_weights],
                                                                                 fused=False),
                                "torch.nn.utils.prune hooks": training_step(theirs),
                                "RigL update step": rigl_update_step(build_model("lenet300"))},
                               rounds=10, repeats=50, warmup=20)
    print(f"LeNet-300-100 training step, batch 128, Adam, 90 % sparse masks, {torch.get_num_threads()} threads")
    ratios = ratios_to_first(results)
    for name in results:
        print(f"  {name:40s} {results[name].median():6.3f} ms   {ratios[name]:.2f}x dense")

    # A whole epoch also loads batches, computes the loss and evaluates: the share of the masks is smaller there.
    splits = load_splits(get_profile("full"))
    cpu = torch.device("cpu")  # everything here runs on the CPU, where no synchronisation is needed
    config = TrainConfig(epochs=1)
    epochs = time_interleaved({"dense": lambda: train(build_model("lenet300"), splits, config, progress=False,
                                                      device=cpu),
                               "course masks": lambda: finetune(one_shot(dense, 0.9, magnitude()).model, splits,
                                                                config, progress=False, device=cpu)},
                              rounds=3, repeats=1, warmup=0)
    print(f"one training epoch on 55 000 images: dense {epochs['dense'].median() / 1000:.2f} s, with course masks "
          f"{epochs['course masks'].median() / 1000:.2f} s ({ratios_to_first(epochs)['course masks']:.2f}x)")


if __name__ == "__main__":
    main()
