"""The checks of exercise 0: the cost of a network."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from course_lib import costs
from course_lib.checks.base import fail, ok


def check_macs(linear_macs: Callable[[nn.Linear], int], conv2d_macs: Callable[[nn.Conv2d, tuple[int, int]], int]) -> None:
    """``linear_macs(layer)`` and ``conv2d_macs(layer, (H, W))``: multiply-accumulates per image."""
    for layer in (nn.Linear(784, 300), nn.Linear(10, 3, bias=False)):
        expected = int(costs.layer_costs(nn.Sequential(layer), input_shape=(layer.in_features,)).macs.item())
        got = linear_macs(layer)
        if got != expected:
            fail(f"{layer}: you counted {got} MACs, expected {expected} = in_features x out_features "
                  "(biases are additions, not multiply-accumulates).")
    cases = [(nn.Conv2d(1, 6, 5, padding=2), (28, 28)), (nn.Conv2d(6, 16, 5), (14, 14)),
             (nn.Conv2d(3, 8, 3, stride=2), (9, 9))]
    for layer, hw in cases:
        expected = int(costs.layer_costs(nn.Sequential(layer), input_shape=(layer.in_channels, *hw)).macs.item())
        got = conv2d_macs(layer, hw)
        if got != expected:
            with torch.no_grad():
                out = layer(torch.zeros(1, layer.in_channels, *hw)).shape[-2:]
            hint = ("each weight is used once per OUTPUT position: H_out x W_out = "
                    f"{out[0]} x {out[1]} here (padding and stride change it)")
            fail(f"{layer} on a {hw[0]}x{hw[1]} input: you counted {got} MACs, expected {expected}; {hint}.")
    ok("MACs of 2 Linear and 3 Conv2d layers match course_lib.costs.layer_costs")


def check_median_latency(median_latency_ms: Callable[[Callable[[], object], int, int], float]) -> None:
    """``median_latency_ms(fn, warmup, repeats)``: median wall time in ms after ``warmup`` untimed calls."""
    calls = []

    def fn() -> None:  # slow for the first 3 calls (warm-up), one slow outlier later, 2 ms otherwise
        calls.append(1)
        n = len(calls)
        time.sleep(0.030 if n <= 3 or n == 8 else 0.002)

    got = median_latency_ms(fn, 3, 9)
    if len(calls) != 12:
        fail(f"your function called fn {len(calls)} times; expected 3 warm-up + 9 timed = 12.")
    if got > 10:
        fail(f"you measured {got:.1f} ms, but the timed calls take about 2 ms: did you time the warm-up calls, "
              "or take the mean (which one slow outlier drags up) instead of the median?")
    if got < 1.5:
        fail(f"you measured {got:.2f} ms for calls that sleep 2 ms: are you returning milliseconds "
              "(time.perf_counter() gives seconds)?")
    ok(f"median latency {got:.2f} ms ignores the slow warm-up calls and the outlier")


def check_break_even(break_even_sparsity: Callable[[int, int], float]) -> None:
    """``break_even_sparsity(value_bits, index_bits)``: the sparsity above which a sparse format beats dense."""
    for value_bits, index_bits in ((32, 32), (32, 16), (32, 5), (8, 4), (16, 8)):
        expected = index_bits / (value_bits + index_bits)
        got = float(break_even_sparsity(value_bits, index_bits))
        if abs(got - expected) > 1e-9:
            if abs(got - (1 - expected)) < 1e-9:
                hint = "that is the DENSITY at break-even; the question asks for the sparsity"
            elif not 0 <= got <= 1:
                hint = "a sparsity is a fraction between 0 and 1"
            else:
                hint = ("dense costs value_bits per weight, sparse costs value_bits + index_bits per KEPT weight: "
                        "set the two equal and solve for the kept fraction")
            fail(f"values of {value_bits} bits, indices of {index_bits}: you said {got:.4f}, expected {expected:.4f} "
                  f"({hint}).")
    measured = costs.break_even(costs.storage_vs_sparsity(torch.randn(300, 784, generator=torch.Generator().manual_seed(0)),
                                                          [round(0.01 * p, 2) for p in range(100)]))
    if abs(measured["CSR, int32 indices"] - break_even_sparsity(32, 32)) > 0.02:
        fail("your formula disagrees with the bytes torch.save writes for CSR with 32-bit indices.")
    ok("break-even sparsities match the formula and, for 32-bit CSR, the bytes torch.save writes")
