"""Devices: where tensors live, and how to time work on a GPU honestly.

The course runs on a laptop CPU, but every function also runs on CUDA and
Apple's MPS. Three rules keep that true:

* inputs follow the model: a function that feeds a model moves its inputs to
  :func:`model_device` of that model;
* results handed to plots and tables are moved to the CPU;
* every timing calls :func:`synchronize` on the device it measures.
"""

from __future__ import annotations

import os

import torch
from torch import nn

DEVICE_ENV_VAR = "COURSE_DEVICE"


def default_device() -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU.

    The environment variable ``COURSE_DEVICE`` (``cpu``, ``cuda`` or ``mps``)
    chooses one instead, e.g. to fill the run cache on a GPU machine.
    """
    chosen = os.environ.get(DEVICE_ENV_VAR)
    if chosen:
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if chosen not in available:
            raise ValueError(f"{DEVICE_ENV_VAR}={chosen!r}: choose cpu, cuda or mps.")
        if not available[chosen]:
            raise ValueError(f"{DEVICE_ENV_VAR}={chosen!r}, but this machine has no {chosen} device. "
                             f"Unset {DEVICE_ENV_VAR} to use the best one available.")
        return torch.device(chosen)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished all the work queued on it.

    A GPU works asynchronously: on CUDA or Apple's MPS, ``model(x)`` only
    *queues* the kernels and returns long before they have run. A clock read
    right after it measures the queueing, not the computation. Every timing
    in this module therefore calls ``synchronize`` before it starts the clock
    (so that earlier work is not counted) and before it reads it (so that
    this work is). On the CPU an operation has finished when it returns:
    there is nothing to wait for.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
