"""Benchmark: one LeNet-300-100 training epoch with torchvision's per-image pipeline vs our in-memory batches.

Why the course keeps Fashion-MNIST as one normalised tensor: with the usual
``transforms.ToTensor()`` + ``Normalize`` pipeline every image passes through
PIL and Python once per epoch, which costs more than the network itself.

Run:  .venv/bin/python benchmarks/data_loading.py
Reports seconds per epoch for both and their ratio, measured in the same run
(this machine is noisy; compare ratios, not absolute times). Not a test.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from course_lib.data import batches, dataset_info, load_splits, resolve_data_root
from course_lib.models import build_model
from course_lib.profiles import get_profile


def epoch_seconds(loader, steps: int) -> float:
    """Time ``steps`` training steps of LeNet-300-100 drawn from ``loader``."""
    model = build_model("lenet300")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    info = dataset_info("fashion-mnist")
    steps = 60_000 // 128
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize((info.mean,), (info.std,))])
    per_image = DataLoader(datasets.FashionMNIST(str(resolve_data_root()), train=True, transform=pipeline),
                           batch_size=128, shuffle=True)
    splits = load_splits(get_profile("full"))
    in_memory = batches(splits.train, 128, shuffle=True)
    steps = min(steps, len(in_memory))
    t_pil = epoch_seconds(per_image, steps)
    t_mem = epoch_seconds(in_memory, steps)
    print(f"{steps} steps of batch 128, LeNet-300-100, {torch.get_num_threads()} threads")
    print(f"torchvision per-image pipeline: {t_pil:6.2f} s")
    print(f"in-memory tensor batches:       {t_mem:6.2f} s")
    print(f"speed-up of the in-memory path: {t_pil / t_mem:5.1f}x")


if __name__ == "__main__":
    main()
