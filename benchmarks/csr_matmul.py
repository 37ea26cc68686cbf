"""Benchmark: CSR sparse vs dense vs masked-dense matrix products at several sparsities.

The first layer of LeNet-300-100 (300 x 784), magnitude-pruned, times a batch
of 256 inputs. Printed: median times and ratios to the dense product, measured
in one run. Shows where (if anywhere) a sparse kernel starts to pay. Not a test.

Run:  .venv/bin/python benchmarks/csr_matmul.py
"""

from __future__ import annotations

import torch

from course_lib.costs import csr_vs_dense_matmul


def main() -> None:
    torch.manual_seed(0)
    weight = torch.randn(300, 784)
    print(f"300 x 784 weight times 784 x 256 batch, {torch.get_num_threads()} threads")
    print(f"{'sparsity':>9} {'dense ms':>9} {'masked/dense':>13} {'CSR/dense':>10}")
    for sparsity in (0.5, 0.8, 0.9, 0.95, 0.99):
        threshold = weight.abs().flatten().kthvalue(int(sparsity * weight.numel())).values
        pruned = weight * (weight.abs() > threshold)
        t = csr_vs_dense_matmul(pruned, 256, repeats=100)
        print(f"{sparsity:9.0%} {t['dense_ms']:9.3f} {t['masked_dense_ms'] / t['dense_ms']:13.2f} "
              f"{t['csr_ms'] / t['dense_ms']:10.2f}")


if __name__ == "__main__":
    main()
