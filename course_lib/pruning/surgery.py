"""Structural surgery: turn removed neurons/filters into a physically smaller dense network.

A mask that zeros whole filters makes nothing faster: the zeros are still
multiplied. To gain speed the units must leave the network, and every layer
that touched them must be cut to match:

* the layer itself loses rows of its weight and entries of its bias;
* the BatchNorm after it (the one :func:`course_lib.pruning.selection.following_batchnorm`
  names, the same rule structured pruning uses) loses the same channels: scale,
  shift **and** its running mean and variance;
* the next Linear/Conv2d loses the matching *inputs*: input channels of a
  convolution, columns of a Linear. After a ``Flatten``, one channel of a
  C x H x W feature map is H*W consecutive columns of the next Linear.

A unit is removed only when it provably contributes nothing: its weights,
its bias and its BatchNorm scale and shift are all zero (as
:func:`course_lib.pruning.selection.structured_masks` makes them; a BatchNorm
without scale and shift must have a zero running mean instead). The shrunk
network therefore computes the same outputs as the masked one. Layers keep
their names: the shrunk ``net.conv2`` is still called ``net.conv2``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from course_lib.costs import PRUNABLE
from course_lib.masks import remove_masks
from course_lib.pruning.selection import BATCHNORMS, CHANNELWISE, following_batchnorm

_SUPPORTED = (*PRUNABLE, *BATCHNORMS, *CHANNELWISE, nn.Flatten)


def _passes_zero(bn: nn.Module) -> torch.Tensor:
    """Per channel: does an all-zero channel leave the BatchNorm as zeros?

    With scale and shift (``affine=True``) the course asks for both to be zero,
    as structured masks make them. Without them, the BatchNorm of a trained
    network subtracts its running mean in eval mode, so zero stays zero only
    where that mean is zero (always, if it keeps no running statistics).
    """
    if bn.affine:
        zero = bn.weight.detach() == 0
        return zero if bn.bias is None else zero & (bn.bias.detach() == 0)
    if bn.running_mean is not None:
        return bn.running_mean == 0
    return torch.ones(bn.num_features, dtype=torch.bool)


def _dead_units(layer: nn.Module, bn: nn.Module | None) -> torch.Tensor:
    """Boolean per output unit: True when it contributes exactly nothing."""
    dead = layer.weight.detach().flatten(1).abs().sum(dim=1) == 0
    if layer.bias is not None:
        dead &= layer.bias.detach() == 0
    if bn is not None:
        dead &= _passes_zero(bn).to(dead.device)
    return dead


def _flatten_input_shapes(net: nn.Sequential, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample input shape of each Flatten in ``net``, by name (``{"flatten": (32, 3, 3)}``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.zeros(1, *input_shape, device=next(net.parameters()).device)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for name, module in net.named_children():
            if isinstance(module, nn.Flatten):
                shapes[name] = tuple(x.shape[1:])
            x = module(x)
    net.train(was_training)
    return shapes


def _flattened(kept: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The Flatten outputs that come from the ``kept`` channels of a C x H x W input of ``shape``.

    Channel c becomes the H*W consecutive features c*H*W ... (c+1)*H*W - 1.
    """
    per_channel = math.prod(shape[1:])
    return (kept[:, None] * per_channel + torch.arange(per_channel, device=kept.device)).flatten()


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
    """A copy of ``bn`` with only the channels ``keep``: every per-channel tensor it has is sliced, its
    scale and shift if it has them (``affine``), its running mean and variance if it tracks them."""
    new = copy.deepcopy(bn)
    new.num_features = len(keep)
    for name, param in bn.named_parameters(recurse=False):
        setattr(new, name, nn.Parameter(param.detach()[keep].clone(), requires_grad=param.requires_grad))
    for name, buffer in bn.named_buffers(recurse=False):
        if buffer.dim() > 0:  # not num_batches_tracked, a single count
            setattr(new, name, buffer[keep].clone())
    return new


def _shrunk_layer(layer: nn.Module, bn: nn.Module | None, kept_inputs: torch.Tensor | None,
                  keep_all: bool) -> tuple[nn.Module, torch.Tensor]:
    """``layer`` without its dead units (unless ``keep_all``) and reading only ``kept_inputs`` (all if None);
    also returns the indices of the units it kept."""
    device = layer.weight.device
    rows = torch.arange(layer.weight.shape[0], device=device) if keep_all \
        else torch.nonzero(~_dead_units(layer, bn)).flatten()
    cols = kept_inputs if kept_inputs is not None else torch.arange(layer.weight.shape[1], device=device)
    sliced = _sliced_linear if isinstance(layer, nn.Linear) else _sliced_conv
    return sliced(layer, rows, cols), rows


def _check_supported(net: nn.Sequential, batchnorm: dict[str, str]) -> None:
    """Refuse layers whose channels shrink cannot follow, and BatchNorms not owned by a layer."""
    unsupported = sorted({type(m).__name__ for m in net if not isinstance(m, _SUPPORTED)})
    if unsupported:
        raise TypeError(f"shrink cannot follow the channels through {unsupported}; supported layers are "
                        f"{', '.join(t.__name__ for t in _SUPPORTED)}.")
    first = next((i for i, m in enumerate(net) if isinstance(m, PRUNABLE)), None)
    if first is None:
        raise TypeError("shrink needs a network with at least one Linear or Conv2d layer.")
    orphans = [name for i, (name, m) in enumerate(net.named_children())
               if isinstance(m, BATCHNORMS) and i > first and name not in batchnorm.values()]
    if orphans:
        raise TypeError(f"shrink cannot tell whose units BatchNorm {orphans} normalises: a BatchNorm must follow "
                        "a Linear/Conv2d with only ReLU, pooling or Dropout in between (see following_batchnorm).")


def shrink(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> nn.Module:
    """A copy of ``model`` with every dead neuron/filter physically removed.

    Works on the course's models (all layers in a ``nn.Sequential`` called
    ``net``). Masks are made permanent in the copy first; the original model
    is not changed. The output layer keeps all its units (they are the classes).
    Each layer is replaced by its smaller version under the same name.
    """
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise TypeError("shrink works on the course's models, whose layers are one nn.Sequential called `net`; "
                        f"{type(model).__name__} has none. For a network with branches (a residual network), "
                        "use course_lib.pruning.dependency.prune_channels.")
    small = copy.deepcopy(model)
    remove_masks(small)
    batchnorm = following_batchnorm(small.net)  # {"conv1": "bn1", ...}
    _check_supported(small.net, batchnorm)
    flatten_shapes = _flatten_input_shapes(small.net, input_shape)
    output = [name for name, m in small.net.named_children() if isinstance(m, PRUNABLE)][-1]

    kept: torch.Tensor | None = None  # indices of the previous layer's surviving outputs
    for name, module in list(small.net.named_children()):
        if isinstance(module, PRUNABLE):
            bn = small.net.get_submodule(batchnorm[name]) if name in batchnorm else None
            new, kept = _shrunk_layer(module, bn, kept, keep_all=name == output)
            setattr(small.net, name, new)
        elif isinstance(module, BATCHNORMS) and kept is not None:
            setattr(small.net, name, _sliced_batchnorm(module, kept))
        elif isinstance(module, nn.Flatten) and kept is not None:
            kept = _flattened(kept, flatten_shapes[name])
    small.train(model.training)  # new layers start in training mode; BatchNorm must match the original's mode
    return small
