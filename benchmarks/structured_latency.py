"""Benchmark: does the latency of structurally pruned CNNs follow their MACs? Batch 256, CPU.

For each CNN of the course, whole filters/neurons are removed (L1 norm, same
fraction per layer) to keep ratios 0.75 / 0.5 / 0.25 and the network is shrunk
physically. Printed: MAC reduction, measured speed-up (the course's timing rule, one run), and
their ratio (1.0 = latency follows MACs exactly). Also the share of time per
operator in the dense network, which explains the gap. Not a test.

Run:  .venv/bin/python benchmarks/structured_latency.py
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.masks import apply_masks
from course_lib.costs import compare_latency, layer_costs, op_time_shares
from course_lib.models import build_model
from course_lib.pruning.selection import structured_masks
from course_lib.pruning.surgery import shrink


def trained_like(name: str) -> nn.Module:
    """A model whose BatchNorm scales differ (as after training), so that ranking is meaningful."""
    model = build_model(name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.1)
    return model.eval()


def main() -> None:
    print(f"batch 256, {torch.get_num_threads()} threads; speed-up and MAC reduction against the dense model")
    for name in ("vgg", "lenet5"):
        dense = trained_like(name)
        dense_macs = layer_costs(dense).macs.sum()
        shrunk = {}
        for keep in (0.75, 0.5, 0.25):
            model = trained_like(name)
            apply_masks(model, structured_masks(model, 1 - keep))
            shrunk[keep] = shrink(model)
        latency = compare_latency({"dense": dense, **{str(k): m for k, m in shrunk.items()}}, 256, rounds=10)
        print(f"\n{name}: dense {latency.loc['dense', 'latency_ms']:.2f} ms")
        for keep, small in shrunk.items():
            speedup = latency.loc[str(keep), "speedup"]
            reduction = dense_macs / layer_costs(small).macs.sum()
            print(f"  keep {keep:4}: MAC reduction {reduction:5.2f}x  speed-up {speedup:5.2f}x  "
                  f"speed-up / MAC reduction {speedup / reduction:4.2f}")
        shares = op_time_shares(dense, 256)
        print("  time per operator (dense):", ", ".join(f"{r.operator} {r['share_%']:.0f} %" for _, r in shares.iterrows()))


if __name__ == "__main__":
    main()
