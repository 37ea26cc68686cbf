"""The checks of exercise 2: structure."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from course_lib.pruning import selection
from course_lib.masks import apply_masks
from course_lib.checks.base import fail, ok


def check_l1_ranking(l1_filter_ranking: Callable[[nn.Conv2d], torch.Tensor]) -> None:
    """``l1_filter_ranking(conv)``: filter indices from the weakest (smallest L1 norm) to the strongest."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    with torch.no_grad():  # two filters on which L1 and L2 disagree: one large weight vs many small ones
        conv.weight[0] = 0.0
        conv.weight[0, 0, 0, 0] = 3.0
        conv.weight[1] = 0.5
    scores = selection.unit_scores(nn.Sequential(conv), ["0"], "l1")["0"]
    expected = torch.sort(scores, stable=True).indices
    got = torch.as_tensor(l1_filter_ranking(conv))
    if got.tolist() == torch.sort(conv.weight.detach().flatten(1).pow(2).sum(1), stable=True).indices.tolist() \
            and got.tolist() != expected.tolist():
        fail("that is the L2 ranking; the L1 norm of a filter is the sum of |w| over its in_channels x k x k weights.")
    if got.tolist() != expected.tolist():
        fail(f"you ranked the filters {got.tolist()}, expected {expected.tolist()} (weakest first). "
              "Sum |w| over dimensions 1, 2 and 3 of conv.weight, then sort ascending.")
    ok("L1 filter ranking matches course_lib.pruning.unit_scores(..., 'l1')")


def check_remove_filters(remove_filters: Callable) -> None:
    """``remove_filters(conv1, bn, conv2, keep)``: a smaller conv1 -> bn -> conv2 block keeping filters ``keep``."""
    torch.manual_seed(0)
    conv1, bn, conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 5, 3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    keep = torch.tensor([0, 2, 3, 7])
    block = nn.Sequential(conv1, bn, nn.ReLU(), conv2).eval()
    masked = copy.deepcopy(block)
    unit = torch.zeros(8)
    unit[keep] = 1
    apply_masks(masked, {"0.weight": unit.reshape(-1, 1, 1, 1).expand_as(conv1.weight).clone(), "0.bias": unit,
                         "1.weight": unit.clone(), "1.bias": unit.clone()})
    new1, new_bn, new2 = remove_filters(copy.deepcopy(conv1), copy.deepcopy(bn), copy.deepcopy(conv2), keep)
    if new1.out_channels != 4 or new1.weight.shape[0] != 4:
        fail(f"conv1 should keep 4 filters, it has {new1.weight.shape[0]}.")
    if new_bn.running_mean.numel() != 4 or new_bn.weight.numel() != 4:
        fail(f"BatchNorm has {new_bn.weight.numel()} scales and {new_bn.running_mean.numel()} running means, "
              "expected 4 of each: slice weight, bias, running_mean AND running_var.")
    if new2.in_channels != 4 or new2.weight.shape[1] != 4:
        fail(f"conv2 still reads {new2.weight.shape[1]} input channels, expected 4: remove the input kernels "
              "of the removed filters (dimension 1 of conv2.weight).")
    x = torch.randn(2, 3, 10, 10)
    small = nn.Sequential(new1, new_bn, nn.ReLU(), new2).eval()
    with torch.no_grad():
        diff = float((small(x) - masked(x)).abs().max())
    if diff > 1e-5:
        fail(f"the smaller block's outputs differ from the masked block's by {diff:.3g}: did you keep the right "
              "filters, slice conv1's bias and the BatchNorm statistics with the same indices?")
    ok("the shrunk block computes what the masked block computes (max difference < 1e-5)")
