"""Structural surgery: turn removed neurons/filters into a physically smaller dense network.

A mask that zeros whole filters makes nothing faster: the zeros are still
multiplied. To gain speed the units must leave the network, and every layer
that touched them must be cut to match:

* the layer itself loses rows of its weight and entries of its bias;
* a BatchNorm after it loses the same channels: scale, shift **and** its
  running mean and variance;
* the next Linear/Conv2d loses the matching *inputs*: input channels of a
  convolution, columns of a Linear. After a ``Flatten``, one channel of a
  C x H x W feature map is H*W consecutive columns of the next Linear.

A unit is removed only when it provably contributes nothing: its weights,
its bias and its BatchNorm scale and shift are all zero (as
:func:`course_lib.pruning.structured_masks` makes them). The shrunk network
therefore computes the same outputs as the masked one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from course_lib.masks import remove_masks

_SUPPORTED = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten,
              nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)


def _dead_units(layer: nn.Module, bn: nn.Module | None) -> torch.Tensor:
    """Boolean per output unit: True when it contributes exactly nothing."""
    dead = layer.weight.detach().flatten(1).abs().sum(dim=1) == 0
    if layer.bias is not None:
        dead &= layer.bias.detach() == 0
    if bn is not None:
        dead &= (bn.weight.detach() == 0) & (bn.bias.detach() == 0)
    return dead


def _flatten_input_shapes(net: nn.Sequential, input_shape: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Per-sample input shape of each Flatten in ``net`` (index -> shape)."""
    shapes: dict[int, tuple[int, ...]] = {}
    x = torch.zeros(1, *input_shape, device=next(net.parameters()).device)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for i, module in enumerate(net):
            if isinstance(module, nn.Flatten):
                shapes[i] = tuple(x.shape[1:])
            x = module(x)
    net.train(was_training)
    return shapes


def _sliced_linear(layer: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(cols), len(rows), bias=layer.bias is not None).to(layer.weight.device)
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows][:, cols])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows])
    return new


def _sliced_conv(layer: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor) -> nn.Conv2d:
    if layer.groups != 1:
        raise TypeError("shrink supports ordinary convolutions (groups=1) only.")
    new = nn.Conv2d(len(cols), len(rows), layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                    bias=layer.bias is not None, padding_mode=layer.padding_mode).to(layer.weight.device)
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows][:, cols])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows])
    return new


def _sliced_batchnorm(bn: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = type(bn)(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats).to(bn.weight.device)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(bn, name) is not None:
                getattr(new, name).copy_(getattr(bn, name)[keep])
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def shrink(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> nn.Module:
    """A copy of ``model`` with every dead neuron/filter physically removed.

    Works on the course's models (all layers in a ``nn.Sequential`` called
    ``net``). Masks are made permanent in the copy first; the original model
    is not changed. The output layer keeps all its units (they are the classes).
    """
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise TypeError("shrink works on the course's models, whose layers are one nn.Sequential called `net`; "
                        f"{type(model).__name__} has none.")
    small = copy.deepcopy(model)
    remove_masks(small)
    layers = list(small.net)
    unsupported = sorted({type(m).__name__ for m in layers if not isinstance(m, _SUPPORTED)})
    if unsupported:
        raise TypeError(f"shrink cannot follow the channels through {unsupported}; supported layers are "
                        f"{', '.join(t.__name__ for t in _SUPPORTED)}.")
    flatten_shapes = _flatten_input_shapes(small.net, input_shape)
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
    last = weighted[-1]

    kept_inputs: torch.Tensor | None = None  # indices of the previous layer's surviving outputs
    for i, module in enumerate(layers):
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            width_in = module.in_features if isinstance(module, nn.Linear) else module.in_channels
            cols = kept_inputs if kept_inputs is not None else torch.arange(width_in)
            bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) \
                else None
            if i == last:
                rows = torch.arange(module.weight.shape[0])
            else:
                rows = torch.nonzero(~_dead_units(module, bn)).flatten().cpu()
            rows, cols = rows.to(module.weight.device), cols.to(module.weight.device)
            layers[i] = (_sliced_linear if isinstance(module, nn.Linear) else _sliced_conv)(module, rows, cols)
            kept_inputs = rows
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and kept_inputs is not None:
            layers[i] = _sliced_batchnorm(module, kept_inputs)
        elif isinstance(module, nn.Flatten) and kept_inputs is not None:
            channels, *spatial = flatten_shapes[i]
            per_channel = int(torch.tensor(spatial).prod()) if spatial else 1
            offsets = torch.arange(per_channel, device=kept_inputs.device)
            kept_inputs = (kept_inputs[:, None] * per_channel + offsets).flatten()
    small.net = nn.Sequential(*layers)
    small.train(model.training)  # new layers start in training mode; BatchNorm must match the original's mode
    return small
