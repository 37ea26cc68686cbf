"""Channels that must go together: structured pruning of any network with Torch-Pruning's dependency graph.

The course's :func:`~course_lib.pruning.surgery.shrink` follows one chain of
layers (an ``nn.Sequential``): removing filter k of a convolution removes
input channel k of the next layer, and that is all. A residual network is a
graph. Its addition ``block(x) + x`` ties channel k of the block's output to
channel k of its input, so the stem convolution, the block's last convolution,
their BatchNorms and every layer that reads the sum must lose the *same*
channels, or the shapes no longer add up. Finding such groups by hand is where
structured pruning code breaks; Torch-Pruning (Fang et al. 2023) traces the
network once and builds them:

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    group = graph.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[0])
    group.prune()

``tests/test_surgery.py`` shows that on the course's plain networks it removes
exactly what ``shrink`` removes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pandas as pd
import torch
import torch_pruning as tp
from torch import nn

from course_lib.costs import prunable_layers
from course_lib.devices import model_device

PRUNED_KINDS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def dependency_graph(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> tp.DependencyGraph:
    """Torch-Pruning's graph of ``model``, traced with one zero image on the model's device."""
    example = torch.zeros(1, *input_shape, device=model_device(model))
    return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def coupled_channels(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 28, 28)) -> pd.DataFrame:
    """What else changes when one output channel of ``layer`` (a ``Conv2d``) is removed: one row per layer.

    Columns: ``layer``, ``kind`` and ``cut`` (``"output channel"`` or
    ``"input channel"``). Pooling, ReLU and the addition itself are left out:
    they have no weights, they just pass the channel on.
    """
    module = model.get_submodule(layer)
    if not isinstance(module, nn.Conv2d):
        raise TypeError(f"{layer} is a {type(module).__name__}; coupled_channels follows a Conv2d's output channels.")
    names = {m: n for n, m in model.named_modules()}
    group = dependency_graph(model, input_shape).get_pruning_group(module, tp.prune_conv_out_channels, idxs=[0])
    rows, seen = [], set()
    for item in group.items:
        target = item.dep.target.module
        if not isinstance(target, PRUNED_KINDS):
            continue
        cut = "input channel" if "in_channels" in getattr(item.dep.handler, "__name__", str(item.dep.handler)) \
            else "output channel"
        key = (names[target], cut)
        if key not in seen:
            seen.add(key)
            rows.append({"layer": names[target], "kind": type(target).__name__, "cut": cut})
    return pd.DataFrame(rows)


def cut_along_the_chain(model: nn.Module, conv: str, bn: str, reader: str, channel: int = 0) -> nn.Module:
    """A copy of ``model`` with output channel ``channel`` of ``conv`` (and of its BatchNorm ``bn``) removed the way
    a chain-following tool removes it: together with input channel ``channel`` of ``reader``, the next layer in
    the chain, and nothing else.

    On a chain that is all there is to it, and the copy runs. In a residual network the same channel also feeds an
    addition whose other addend keeps every channel, so the copy fails at the addition, with a shape error: the
    failure :func:`coupled_channels` and Torch-Pruning's dependency graph exist to prevent.
    """
    cut = copy.deepcopy(model)
    for name, handler in ((conv, tp.prune_conv_out_channels), (bn, tp.prune_batchnorm_out_channels),
                          (reader, tp.prune_conv_in_channels)):
        handler(cut.get_submodule(name), idxs=[channel])
    return cut


def prune_channels(model: nn.Module, keep_ratio: float, input_shape: tuple[int, ...] = (1, 28, 28),
                   ignored: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with ``1 - keep_ratio`` of the channels of every coupled group removed physically.

    Torch-Pruning's ``MetaPruner`` ranks the channels of each group by the L1
    norm of their weights in every coupled layer (Li et al.'s criterion),
    averaged over the group's layers (its default; a sum would rank a group's
    channels alike), and removes the same fraction in every group. The
    output layer (the last prunable one) is left alone unless ``ignored``
    names other layers. The original is not changed.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}.")
    small = copy.deepcopy(model)
    layers = prunable_layers(small)
    left_alone = [layers[name] for name in (ignored if ignored is not None else [list(layers)[-1]])]
    example = torch.zeros(1, *input_shape, device=model_device(small))
    pruner = tp.pruner.MetaPruner(small, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=1.0 - keep_ratio, ignored_layers=left_alone)
    pruner.step()
    return small
