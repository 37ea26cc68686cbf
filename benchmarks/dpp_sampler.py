"""Benchmark: what DPP's sampler costs on the CPU (chapter 7).

Timed in alternating rounds, ratios within a round (this machine is noisy):
  * forward + backward of the relaxation for LeNet-300-100's first layer
    (300 rows of 784, k = 78: 90 % sparsity), as k successive softmaxes (the
    definition) and in the closed form of ``course_lib.dpp.sampler``;
  * a whole straight-through sample (noise, top-k, relaxation), and the same at
    the 2:4 tile layout (300 x 196 groups of 4);
  * one DPP training step of LeNet-300-100 against a masked one (fixed mask).
Not a test.

Run:  .venv/bin/python benchmarks/dpp_sampler.py
"""

from __future__ import annotations

import torch

from course_lib.costs import ratios_to_first, time_interleaved
from course_lib.dpp.pruner import DPP
from course_lib.dpp.sampler import gumbel_noise, relaxed_top_k, sample_k_hot, successive_softmaxes
from course_lib.masks import apply_masks
from course_lib.models import build_model
from course_lib.pruning.procedures import magnitude
from course_lib.training import TrainConfig, make_optimizer
from course_lib.training.hooks import TrainContext


def backward_of(make: callable, logits: torch.Tensor) -> callable:
    def run() -> None:
        logits.grad = None
        make().sum().backward()
    return run


def step_of(model: torch.nn.Module, hooks: list, x: torch.Tensor, y: torch.Tensor) -> callable:
    config = TrainConfig(epochs=1)
    ctx = TrainContext(model=model, data=None, config=config, device=torch.device("cpu"), history=None,  # type: ignore[arg-type]
                       steps_per_epoch=100, total_steps=100)
    for hook in hooks:
        hook.on_start(ctx)
    groups = [g for hook in hooks for g in hook.param_groups(ctx)]
    optimizer = make_optimizer(model, config, groups)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run() -> None:
        for hook in hooks:
            hook.before_forward(ctx)
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return run


def main() -> None:
    torch.manual_seed(0)
    logits = torch.randn(300, 784, requires_grad=True)
    noise = gumbel_noise(logits.shape, torch.Generator().manual_seed(0))
    tiles = torch.randn(300, 196, 4, requires_grad=True)
    relaxation = time_interleaved({
        "k softmaxes (loop)": backward_of(lambda: successive_softmaxes(logits + noise, 78, 0.5), logits),
        "closed form": backward_of(lambda: relaxed_top_k(logits + noise, 78, 0.5), logits),
        "whole sample": backward_of(lambda: sample_k_hot(logits, 78, 0.5), logits),
        "whole sample, 2:4 tiles": backward_of(lambda: sample_k_hot(tiles, 2, 0.5), tiles),
    }, rounds=5, repeats=10)
    print("fc1 relaxation, forward + backward (ms, median over rounds):")
    print(relaxation.median().round(2).to_string())
    print("ratio to the loop, within each round:")
    print(ratios_to_first(relaxation).round(3).to_string())

    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    masked = build_model("lenet300")
    apply_masks(masked, magnitude("local")(masked, 0.9))
    steps = time_interleaved({
        "masked step (fixed mask)": step_of(masked, [], x, y),
        "DPP step (sampled masks)": step_of(build_model("lenet300"), [DPP(0.9, exclude=["net.fc3"])], x, y),
    }, rounds=5, repeats=20)
    print("\nLeNet-300-100 training step, batch 128 (ms):")
    print(steps.median().round(2).to_string())
    print("DPP step / masked step, within each round:", round(float(ratios_to_first(steps).iloc[1]), 2))


if __name__ == "__main__":
    main()
