"""A disk cache of trained baselines and experiment results, shared by every notebook.

Chapter 1 prunes the LeNet-300-100 that chapter 0 trained; chapter 3 needs it
again; the capstone re-reads every chapter's results. Computing a result once
and loading it afterwards keeps each notebook within its time budget, and lets
a lecturer who ran the course before class re-open any chapter in seconds.

A cached result is found by a *key* built from everything that determines it:
for a baseline the model and its architecture, the dataset, the split sizes
and seed, the full :class:`~course_lib.training.TrainConfig`, the device type,
the PyTorch version and ``COURSE_SEED``; for any other experiment, the parts
you give :func:`cached_run` plus the same environment. Change any of them and
the result is computed anew.

The code that computes a result determines it too, so every key also holds a
:func:`code_fingerprint`: a hash of the source of the modules that compute it
and of every module of their package they import, transitively, without
comments, docstrings and formatting. Edit a line of that code and the result
is computed anew; nothing stale is ever loaded. The modules are the training
loop and the models for a baseline; for :func:`cached_run`, those you name
with ``code=``, by default the module that defines ``compute`` or, for a
function typed in a notebook, the whole ``course_lib`` package. (A notebook's
own lines cannot be fingerprinted: when you change them, change the ``parts``.)

Files are written atomically (to a temporary file, then renamed), so a
notebook running in parallel never reads half a file. A file that cannot be
read all the same - a killed process, a full disk, a copy from another
machine - is moved aside with a warning that names it, and recomputed.

The cache lives in ``COURSE_CACHE_DIR`` or, by default,
``~/.cache/pruning-course``. Delete that folder to recompute everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

try:
    import fcntl  # Linux and macOS: lets two processes agree on who computes a result
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from course_lib.data import DataSplits
from course_lib.fingerprint import Code, code_fingerprint, code_names, default_code
from course_lib.models import build_model
from course_lib.profiles import seed_shift
from course_lib.training import CLASSIFICATION, History, Task, TrainConfig, default_device, train

CACHE_ENV_VAR = "COURSE_CACHE_DIR"
CACHE_FORMAT = 3  # bump when the meaning of a cached file changes (3: Adam runs fused)
BASELINE_CODE = ("course_lib.training.loop", "course_lib.models")  # what trains a baseline (config, hooks, data...)
T = TypeVar("T")


def cache_dir() -> Path:
    """Where results are kept (``COURSE_CACHE_DIR`` or ``~/.cache/pruning-course``)."""
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "pruning-course"))


def _describe(value: Any) -> Any:
    """A JSON-able description of a key part (dataclasses by their fields, devices and paths as text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **asdict(value)}
    if isinstance(value, (torch.device, Path)):
        return str(value)
    if isinstance(value, nn.Module):
        return repr(value)
    raise TypeError(f"Cannot use a {type(value).__name__} in a cache key: describe it with numbers and strings.")


def make_key(parts: Mapping[str, Any]) -> str:
    """A short hash of ``parts`` plus what every result depends on (PyTorch version, COURSE_SEED, format)."""
    description = {**parts, "torch": torch.__version__, "course_seed": seed_shift(), "format": CACHE_FORMAT}
    text = json.dumps(description, sort_keys=True, default=_describe)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weights_digest(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """A short hash of ``model``'s parameters and buffers (or of a state dict, such as saved initial weights): the key
    part of a result computed *from* a trained model (a pruned copy, say), so that retraining the model, or loading
    other weights, re-keys what was derived from it."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


_MISSING = object()


def _load(path: Path) -> Any:
    """The value stored at ``path``, ``_MISSING`` when there is none or it is unreadable (then moved aside)."""
    if not path.is_file():
        return _MISSING
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)  # our own files, written by _save
        if not isinstance(saved, dict) or saved.get("format") != CACHE_FORMAT or "value" not in saved:
            raise ValueError("it is not a course cache file of this version")
        return saved["value"]
    except Exception as error:  # noqa: BLE001 - any failure to read means: recompute
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"The cache file {path} could not be read ({type(error).__name__}: {error}). "
                      f"It was moved to {aside} and the result is computed again.", stacklevel=3)
        return _MISSING


def _save(path: Path, value: Any) -> None:
    """Store ``value`` at ``path`` atomically: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        try:
            torch.save({"format": CACHE_FORMAT, "value": value}, tmp)
        except Exception:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


@contextmanager
def _computing(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` while its result is computed.

    Two processes may ask for the same result at once (two notebooks open,
    the test suite's parallel workers). The second one waits for the first,
    saying so, and then loads its file instead of computing it again. Where
    the platform has no ``fcntl`` (Windows), nothing is locked.
    """
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is computing {path.name} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_or_compute(path: Path, compute: Callable[[], T]) -> tuple[T, bool]:
    """The value stored at ``path`` (and True), or ``compute()`` stored there (and False), computed once at a time."""
    value = _load(path)
    if value is not _MISSING:
        return value, True
    with _computing(path):
        value = _load(path)  # computed by another process while this one waited
        if value is not _MISSING:
            return value, True
        value = compute()
        _save(path, value)
    return value, False


def cached_run(name: str, parts: Mapping[str, Any], compute: Callable[[], T], *, code: Code | None = None,
               device: torch.device | None = None, directory: Path | None = None) -> T:
    """Load the result of an experiment from the cache, or compute and store it.

    Args:
        name: a readable prefix of the file name (``"ch6-rigl"``).
        parts: everything that determines the result: model name, sparsity,
            method settings, a ``TrainConfig``, the data's sizes and seed...
        compute: computes the result when it is not cached. Return plain data:
            numbers, strings, tensors, lists and dicts of them, dataclasses
            such as ``History``; store a model as its ``state_dict()``
            (a parametrized model cannot be pickled whole).
        code: the module(s) whose code determines the result, by name
            (``"course_lib.sparse.updaters"``) or as module objects; what they
            import of their package counts too (see :func:`code_fingerprint`).
            Default :func:`default_code`: the module that defines ``compute``
            if it is part of ``course_lib``, else the whole package.
        device: the device the result is computed on (part of the key:
            GPUs give slightly different numbers); default :func:`default_device`.
        directory: the cache folder (default :func:`cache_dir`).
    """
    device = device or default_device()
    modules = default_code(compute) if code is None else code_names(code)
    key = make_key({"name": name, **parts, "device": device.type, "code_fingerprint": code_fingerprint(*modules)})
    path = (Path(directory) if directory is not None else cache_dir()) / f"{name}-{key}.pt"
    return _load_or_compute(path, compute)[0]


def cache_key(model_name: str, data: DataSplits, config: TrainConfig, options: Mapping[str, Any] | None = None,
              task: Task = CLASSIFICATION) -> str:
    """The key of a trained baseline: everything that determines its weights, including the code that trains it.

    ``options`` (the model's constructor arguments) enter through the architecture they build; a task other than
    classification is named in the key (a classifier's key is the same as before language models existed).
    """
    parts = {
        "model": model_name,
        "architecture": repr(build_model(model_name, **(options or {}))),  # a changed layer width is a different model
        "dataset": data.name,
        "sizes": data.sizes(),
        "split_seed": data.seed,
        "config": asdict(config),
        "device": default_device().type,
        "code_fingerprint": code_fingerprint(*BASELINE_CODE),
    }
    if repr(task) != repr(CLASSIFICATION):
        parts["task"] = repr(task)
    return make_key(parts)


@dataclass
class Baseline:
    """A trained dense model and how it was made."""

    model: nn.Module
    history: History
    config: TrainConfig
    from_cache: bool
    path: Path


def trained_baseline(model_name: str, data: DataSplits, config: TrainConfig,
                     directory: Path | None = None, progress: bool = True, options: Mapping[str, Any] | None = None,
                     task: Task = CLASSIFICATION) -> Baseline:
    """Load the trained baseline from the cache, or train it (seeded) and store it.

    The model is initialised with ``build_model(model_name, seed=config.seed, **options)``,
    trained with :func:`~course_lib.training.train` on ``task`` (a language model passes ``task=NextToken()``),
    and returned in eval mode on the CPU.
    """
    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / f"{model_name}-{cache_key(model_name, data, config, options, task)}.pt"
    model = build_model(model_name, seed=config.seed, **(options or {}))

    def fit() -> dict[str, Any]:
        history = train(model, data, config, progress=progress, desc=f"training {model_name}", task=task)
        return {"state_dict": model.cpu().state_dict(), "history": asdict(history)}

    saved, from_cache = _load_or_compute(path, fit)
    model.load_state_dict(saved["state_dict"])
    model.cpu().eval()
    return Baseline(model, History(**saved["history"]), config, from_cache=from_cache, path=path)
