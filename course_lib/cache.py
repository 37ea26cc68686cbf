"""A disk cache of trained dense baselines, shared by every notebook.

Chapter 1 prunes the LeNet-300-100 that chapter 0 trained; chapter 3 needs it
again. Training it once and loading it afterwards keeps each notebook within
its time budget. A cached model is found by a *key* built from everything
that determines its weights: the model and its architecture, the dataset, the split sizes and
seed, the full :class:`~course_lib.training.TrainConfig` and the PyTorch
version. Change any of them and the model is trained anew; nothing stale is
ever loaded.

The cache lives in ``COURSE_CACHE_DIR`` or, by default,
``~/.cache/pruning-course``. Delete that folder to retrain everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from course_lib.data import DataSplits
from course_lib.models import build_model
from course_lib.training import History, TrainConfig, train

CACHE_ENV_VAR = "COURSE_CACHE_DIR"
CACHE_FORMAT = 1  # bump when the meaning of a cached file changes


def cache_dir() -> Path:
    """Where trained baselines are kept (``COURSE_CACHE_DIR`` or ``~/.cache/pruning-course``)."""
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "pruning-course"))


def cache_key(model_name: str, data: DataSplits, config: TrainConfig) -> str:
    """A short hash of everything that determines the trained weights."""
    description = {
        "model": model_name,
        "architecture": repr(build_model(model_name)),  # a changed layer width is a different model
        "dataset": data.name,
        "sizes": data.sizes(),
        "split_seed": data.seed,
        "config": asdict(config),
        "torch": torch.__version__,
        "format": CACHE_FORMAT,
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Baseline:
    """A trained dense model and how it was made."""

    model: nn.Module
    history: History
    config: TrainConfig
    from_cache: bool
    path: Path


def trained_baseline(model_name: str, data: DataSplits, config: TrainConfig,
                     directory: Path | None = None, progress: bool = True) -> Baseline:
    """Load the trained baseline from the cache, or train it (seeded) and store it.

    The model is initialised with ``build_model(model_name, seed=config.seed)``,
    trained with :func:`~course_lib.training.train`, and returned in eval mode on the CPU.
    """
    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / f"{model_name}-{cache_key(model_name, data, config)}.pt"
    model = build_model(model_name, seed=config.seed)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        model.eval()
        return Baseline(model, History(**saved["history"]), config, from_cache=True, path=path)

    history = train(model, data, config, progress=progress, desc=f"training {model_name}")
    model.cpu().eval()
    folder.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file first: a notebook running in parallel never reads half a file.
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
        torch.save({"state_dict": model.state_dict(), "history": asdict(history)}, tmp)
    os.replace(tmp.name, path)
    return Baseline(model, history, config, from_cache=False, path=path)
