"""Watching the masks move: a hook that records what a sparse run's masks did.

:class:`MaskTracker` runs beside any training (dense, AGP, static, SET,
RigL) and records, as plain data that the run cache can store:

* the **training FLOPs** of every step (:mod:`course_lib.sparse.flops`),
  with the densities of that step and a dense weight gradient where the
  masks were asked for one (RigL's update steps);
* the **in-time over-parameterisation** rate (Liu et al. 2021): the share of
  all weights that have been active at *some* step so far. Static training
  never leaves its initial mask; SET and RigL explore, and a network that
  has tried more connections has, in time, seen more of the dense one;
* snapshots of each layer's density and of the first layer's **in-degree**:
  how many active connections leave each input (for LeNet-300-100, each
  pixel of the 28x28 image).

Put the tracker *after* the mask updater in the list of hooks, so that in
each phase it sees what the updater has just done::

    rigl, tracker = RigL(0.9), MaskTracker(snapshot_every=50)
    train(model, data, config, hooks=[rigl, tracker])
    tracker.trace.ever_active_total[-1]    # e.g. 0.31 for 10 % density

:func:`in_degree_alignment` measures whether the first layer's connections
gather on the pixels that carry information.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from torch.utils.data import TensorDataset

from course_lib.costs import layer_costs
from course_lib.masks import MaskParametrization, mask_layers
from course_lib.sparse.flops import forward_flops, training_step_flops
from course_lib.training.hooks import Hook, TrainContext


@dataclass
class MaskTrace:
    """What a run's masks did, snapshot by snapshot (plain data: it goes into the run cache).

    Attributes:
        layers: the prunable layers, in network order (``"net.fc1"``, ...).
        weights: each layer's number of weights.
        steps: the optimizer steps of the snapshots (0 = before training).
        densities: per snapshot, the fraction of each layer's weights active.
        ever_active: per snapshot, the fraction of each layer's weights active at some step so far.
        ever_active_total: the same over all layers together.
        in_degree: per snapshot, the active connections from each input of the first layer.
        training_flops: FLOPs of every training step so far (forward and backward, all images).
        dense_weight_gradient_steps: steps whose backward pass computed every weight's gradient.
        images: images trained on.
    """

    layers: list[str]
    weights: dict[str, int]
    steps: list[int] = field(default_factory=list)
    densities: list[dict[str, float]] = field(default_factory=list)
    ever_active: list[dict[str, float]] = field(default_factory=list)
    ever_active_total: list[float] = field(default_factory=list)
    in_degree: list[torch.Tensor] = field(default_factory=list)
    training_flops: float = 0.0
    dense_weight_gradient_steps: int = 0
    images: int = 0

    @property
    def density_total(self) -> list[float]:
        """The fraction of all weights active at each snapshot."""
        total = sum(self.weights.values())
        return [sum(d[n] * self.weights[n] for n in self.layers) / total for d in self.densities]


class MaskTracker(Hook):
    """Records a :class:`MaskTrace` (in ``self.trace``) every ``snapshot_every`` steps and at the end.

    Works on an unmasked model too (every density is 1), so that a dense run
    is counted with the same ruler.
    """

    def __init__(self, snapshot_every: int) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be at least 1 step, got {snapshot_every}.")
        self.snapshot_every = snapshot_every
        self.trace: MaskTrace | None = None

    def on_start(self, ctx: TrainContext) -> None:
        costs = layer_costs(ctx.model).set_index("layer")
        self.macs = costs.macs.astype(float).to_dict()
        self.trace = MaskTrace(layers=list(costs.index), weights=costs.weights.astype(int).to_dict())
        masks = mask_layers(ctx.model)
        self.ever = {name: self._mask(ctx.model, masks, name).bool() for name in self.trace.layers}
        self._snapshot(ctx.model, ctx.step)

    def before_forward(self, ctx: TrainContext) -> None:
        assert self.trace is not None and ctx.batch is not None
        masks = mask_layers(ctx.model)
        dense_gradient = any(getattr(m, "capture_dense_grad", False) for m in masks.values())
        images = len(ctx.batch[0])
        self.trace.training_flops += images * training_step_flops(self.macs, self._densities(masks), dense_gradient)
        self.trace.dense_weight_gradient_steps += int(dense_gradient)
        self.trace.images += images

    def after_step(self, ctx: TrainContext) -> None:
        masks = mask_layers(ctx.model)
        for name, ever in self.ever.items():
            ever |= self._mask(ctx.model, masks, name).bool()
        if ctx.step % self.snapshot_every == 0 or ctx.step == ctx.total_steps:
            self._snapshot(ctx.model, ctx.step)

    def inference_flops(self, model: nn.Module) -> float:
        """FLOPs of one image's forward pass with the masks in use now (zero weights skipped)."""
        return forward_flops(self.macs, self._densities(mask_layers(model)))

    @staticmethod
    def _mask(model: nn.Module, masks: dict[str, MaskParametrization], layer: str) -> torch.Tensor:
        mask = masks.get(f"{layer}.weight")
        if mask is None:
            return torch.ones_like(model.get_submodule(layer).weight, dtype=torch.bool).detach()
        return mask.hard_mask().detach()

    def _densities(self, masks: dict[str, MaskParametrization]) -> dict[str, float]:
        return {name: float(masks[f"{name}.weight"].hard_mask().float().mean()) if f"{name}.weight" in masks else 1.0
                for name in self.macs}

    @torch.no_grad()
    def _snapshot(self, model: nn.Module, step: int) -> None:
        assert self.trace is not None
        trace, masks = self.trace, mask_layers(model)
        trace.steps.append(step)
        trace.densities.append(self._densities(masks))
        trace.ever_active.append({name: float(self.ever[name].float().mean()) for name in trace.layers})
        total = sum(trace.weights.values())
        trace.ever_active_total.append(sum(int(self.ever[name].sum()) for name in trace.layers) / total)
        first = self._mask(model, masks, trace.layers[0])
        other_dims = [d for d in range(first.dim()) if d != 1]  # dim 1 is the input (feature or channel)
        trace.in_degree.append(first.float().sum(dim=other_dims).cpu().to(torch.int16))


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties get their mean rank)."""
    if x.numel() != y.numel() or x.numel() < 2:
        raise ValueError(f"need two tensors of the same size (at least 2 values), got {x.numel()} and {y.numel()}.")

    def ranks(v: torch.Tensor) -> torch.Tensor:
        v = v.flatten().double()
        r = torch.empty_like(v)
        r[torch.argsort(v, stable=True)] = torch.arange(len(v), dtype=torch.float64)
        _, group, size = torch.unique(v, return_inverse=True, return_counts=True)  # ties: the mean of their ranks
        return (torch.zeros(len(size), dtype=torch.float64).scatter_add_(0, group, r) / size)[group]

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(torch.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum()) / denominator if denominator > 0 else 0.0


def pixel_spread(images: TensorDataset) -> torch.Tensor:
    """Each input pixel's standard deviation over ``images``: how much it varies from image to image."""
    return images.tensors[0].flatten(1).std(dim=0)


def in_degree_alignment(trace: MaskTrace, spread: torch.Tensor) -> list[float]:
    """At each snapshot: how well the first layer's in-degree follows each input pixel's ``spread``.

    A pixel that hardly varies from image to image (the blank border of most
    images) carries little information; a pixel whose value differs a lot
    does. The rank correlation between a pixel's in-degree and its spread
    (:func:`pixel_spread`) is about 0 for a random mask and rises as
    connections move to the informative pixels.
    """
    return [rank_correlation(degree.float(), spread) for degree in trace.in_degree]


def in_degree_by_spread(degree: torch.Tensor, spread: torch.Tensor, groups: int = 10) -> list[float]:
    """The mean in-degree of the pixels in each of ``groups`` equal groups, ordered by their ``spread``.

    Group 1 holds the pixels that vary least from image to image (the blank border), the last group those that
    vary most. A random mask gives a flat line at the layer's density times its width; connections that move
    towards the informative pixels tilt it upwards to the right. This is the curve behind
    :func:`in_degree_alignment`'s single number: the rank correlation says *whether* the in-degree follows the
    spread, the curve shows *where* the connections went.
    """
    if degree.numel() != spread.numel():
        raise ValueError(f"one in-degree per pixel: got {degree.numel()} in-degrees for {spread.numel()} pixels.")
    if not 1 <= groups <= spread.numel():
        raise ValueError(f"groups must be between 1 and the number of pixels ({spread.numel()}), got {groups}.")
    order = torch.argsort(spread.flatten(), stable=True)
    return [float(chunk.float().mean()) for chunk in torch.tensor_split(degree.flatten()[order], groups)]
