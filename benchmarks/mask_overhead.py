"""Benchmark: what do masks cost during training? LeNet-300-100, batch 128, Adam.

Three ways to train the same network, timed per optimizer step in one run:
  * dense: no masks;
  * course masks: torch.nn.utils.parametrize (weight = original * mask at every
    forward) plus zero_pruned_weights after every step (what course_lib does);
  * torch.nn.utils.prune: its forward pre-hook recomputes weight_orig * weight_mask.
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
from course_lib.training import TrainConfig, train


def training_step(model: nn.Module, hooks=()):
    """One Adam step on a fixed random batch, as a function to time."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        for hook in hooks:
            hook(model, 0)

    return step


def main() -> None:
    dense = build_model("lenet300")
    masks = unstructured_masks(dense, 0.9)
    ours = build_model("lenet300")
    apply_masks(ours, masks)
    theirs = build_model("lenet300")
    for name, layer in prunable_layers(theirs).items():
        prune.custom_from_mask(layer, "weight", masks[f"{name}.weight"])
    results = time_interleaved({"dense": training_step(dense),
                                "course masks (parametrize + re-zero)": training_step(ours, [zero_pruned_weights]),
                                "torch.nn.utils.prune hooks": training_step(theirs)},
                               rounds=10, repeats=50, warmup=20)
    print(f"LeNet-300-100 training step, batch 128, Adam, 90 % sparse masks, {torch.get_num_threads()} threads")
    ratios = ratios_to_first(results)
    for name in results:
        print(f"  {name:40s} {results[name].median():6.3f} ms   {ratios[name]:.2f}x dense")

    # A whole epoch also loads batches, computes the loss and evaluates: the share of the masks is smaller there.
    splits = load_splits(get_profile("full"))
    config = TrainConfig(epochs=1)
    epochs = time_interleaved({"dense": lambda: train(build_model("lenet300"), splits, config, progress=False),
                               "course masks": lambda: finetune(one_shot(dense, 0.9, magnitude()).model, splits,
                                                                config, progress=False)},
                              rounds=3, repeats=1, warmup=0)
    print(f"one training epoch on 55 000 images: dense {epochs['dense'].median() / 1000:.2f} s, with course masks "
          f"{epochs['course masks'].median() / 1000:.2f} s ({ratios_to_first(epochs)['course masks']:.2f}x)")


if __name__ == "__main__":
    main()
