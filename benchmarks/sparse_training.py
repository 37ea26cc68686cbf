"""Benchmark: what sparse training costs in wall-clock time on the CPU (LeNet-300-100, chapter 6's recipe).

Timed in alternating rounds, ratios within a round (this machine is noisy):
  * one training epoch of static, SET and RigL (ERK, 90 %), each with chapter 6's
    MaskTracker, relative to dense *masked* training (a fixed magnitude mask with
    zero_pruned_weights: what every pruned network of the course trains with);
  * one RigL update step (dense gradient kept, 30 % of every layer's weights moved)
    relative to an ordinary masked training step.
The FLOP counts of chapter 6 assume a kernel that skips zeros; this shows what the
CPU actually does (masked weights cost as much as dense ones). Not a test.

Run:  .venv/bin/python benchmarks/sparse_training.py
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mask_overhead import rigl_update_step, training_step  # run as a script: benchmarks/ is on sys.path
from course_lib.costs import ratios_to_first, time_interleaved
from course_lib.data import load_splits
from course_lib.masks import apply_masks, zero_pruned_weights
from course_lib.models import build_model
from course_lib.profiles import get_profile
from course_lib.pruning.procedures import finetune, magnitude, one_shot
from course_lib.pruning.selection import unstructured_masks
from course_lib.chapters import ch06_sparse_training as comparison
from course_lib.sparse.schedules import update_every
from course_lib.sparse.tracking import MaskTracker
from course_lib.training import train


def main() -> None:
    splits = load_splits(get_profile("full"))
    config = replace(comparison.sparse_recipe(get_profile("full")), epochs=1)
    delta_t = update_every(replace(config, epochs=comparison.sparse_recipe(get_profile("full")).epochs),
                                      len(splits.train))
    cpu = torch.device("cpu")
    dense = build_model("lenet300")

    def masked_epoch() -> None:
        finetune(one_shot(dense, 0.9, magnitude()).model, splits, config, progress=False, device=cpu)

    def sparse_epoch(trainer):
        def run() -> None:
            hooks = [trainer(0.9, "erk", update_every=delta_t), MaskTracker(delta_t)]
            train(build_model("lenet300"), splits, config, hooks=hooks, progress=False, device=cpu)
        return run

    epochs = time_interleaved({"masked (fixed mask)": masked_epoch,
                               **{name: sparse_epoch(t) for name, t in comparison.SPARSE_TRAINERS.items()}},
                              rounds=3, repeats=1, warmup=0)
    ratios = ratios_to_first(epochs)
    print(f"one epoch on {len(splits.train):,} images, 90 % ERK, Delta T = {delta_t}, "
          f"{torch.get_num_threads()} threads")
    for name in epochs:
        print(f"  {name:22s} {epochs[name].median() / 1000:6.2f} s   {ratios[name]:.2f}x masked")

    masked = build_model("lenet300")
    apply_masks(masked, unstructured_masks(masked, 0.9))
    steps = time_interleaved({"masked training step": training_step(masked, [zero_pruned_weights]),
                              "RigL update step": rigl_update_step(build_model("lenet300"))},
                             rounds=10, repeats=50, warmup=20)
    step_ratio = ratios_to_first(steps)["RigL update step"]
    print(f"  RigL update step {steps['RigL update step'].median():.2f} ms = {step_ratio:.2f}x a masked step "
          f"({steps['masked training step'].median():.2f} ms); amortised over Delta T = {delta_t}: "
          f"+{(step_ratio - 1) / delta_t:.1%} per step")


if __name__ == "__main__":
    main()
