"""What a network costs: parameters, non-zeros, MACs, bytes and measured latency.

Pruning papers report different costs, and they do not move together:

* **parameters / non-zeros** - what unstructured pruning reduces;
* **MACs** (multiply-accumulates per image) - *dense* MACs count every weight,
  *effective* MACs skip the zero weights, which only special hardware or
  sparse kernels can actually do;
* **bytes on disk** - dense float32, or a sparse format (CSR) that pays an index
  per stored value;
* **latency** - the only one a user feels, and the only one measured rather
  than counted.

Everything reads ``module.weight``, the weight the layer actually uses, so the
functions work unchanged on models masked by ``torch.nn.utils.prune``.

The functions that run the model on a made-up input (MACs, latency, the
profile) need the shape of one input, without the batch dimension:
``input_shape=None`` means the model's own ``model.input_shape`` (see
:func:`course_lib.models.input_shape_of`); pass it for any other model, e.g.
``input_shape=(784,)`` for a plain ``nn.Linear(784, 10)``. The inputs are
random floats, as images are.

Measurements run where the model is (CPU, CUDA or Apple's MPS): inputs are
made on the model's device once, before the clock starts, and every timing
waits for that device to finish (:func:`synchronize`), because a GPU returns
before its work is done.

**The timing rule** behind every speed claim of the course (a claim must not
fail because a laptop was busy, nor pass because it was):

1. warm up, then time the variants in **alternating rounds** (A, B, A, B, ...),
   so that a drift of the machine's speed hits every variant alike
   (:func:`time_interleaved`);
2. within a round keep each variant's **fastest** call: other programs can
   only add time, so the fastest of a few calls is the least disturbed;
3. on the CPU, time on **one thread**: an operator split over two threads
   waits for the slower one, and on a 2-core laptop that thread shares its
   core with whatever else runs (a browser, a video call, another notebook),
   which slows each model by a different factor;
4. a speed-up is the median over rounds of the ratio **within** each round,
   with the spread of those ratios (25th-75th percentile,
   :func:`speedups_over_first`). A claim is decided on the whole spread: it
   holds when the spread lies above the bar, fails when it lies below; while
   it straddles the bar, more rounds are measured (``until_decided`` in
   :func:`compare_latency`), and a measurement still undecided after a time
   cap says so instead of failing (``course_lib.claims.claim(interval=...)``).
"""

from __future__ import annotations

import io
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib.devices import model_device, synchronize
from course_lib.models import input_shape_of

PRUNABLE = (nn.Linear, nn.Conv2d)
INDEX_BYTES = 4  # CSR column indices and row pointers stored as int32
VALUE_BYTES = 4  # float32


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The ``nn.Linear`` and ``nn.Conv2d`` layers of ``model`` by name, in order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def macs_per_output(layer: nn.Module) -> int:
    """Multiply-accumulates needed for one output value of a dense layer.

    Linear: one per input feature. Conv2d: one per weight of a filter,
    ``in_channels / groups * kernel_height * kernel_width``.
    """
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return layer.in_channels // layer.groups * kh * kw
    raise TypeError(f"MACs are defined here for nn.Linear and nn.Conv2d, not {type(layer).__name__}.")


def _output_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Run one image through ``model`` and record, per prunable layer, how many
    times each of its weights is used (output positions per output channel)."""
    positions: dict[str, int] = {}
    handles = []
    for name, layer in prunable_layers(model).items():
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            per_channel = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
            positions[name] = output.numel() // (output.shape[0] * per_channel)
        handles.append(layer.register_forward_hook(record))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=model_device(model)))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return positions


def layer_costs(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> pd.DataFrame:
    """One row per Linear/Conv2d layer: weights, non-zeros, sparsity, MACs per image.

    Columns: ``layer``, ``kind``, ``weights``, ``nonzero``, ``sparsity_%``,
    ``biases``, ``macs`` (dense) and ``effective_macs`` (zero weights skipped).
    A weight used at P output positions (P = H_out*W_out for a convolution, 1
    for a Linear on a flat input) costs P MACs per image.
    ``input_shape`` is one input's shape (default: ``model.input_shape``).
    """
    positions = _output_positions(model, input_shape_of(model, input_shape))
    rows = []
    for name, layer in prunable_layers(model).items():
        with torch.no_grad():  # reading a mask's value, not training it: a DPP mask gives its kept top-k, no sample
            weight = layer.weight
        nonzero = int(torch.count_nonzero(weight))
        rows.append({
            "layer": name,
            "kind": type(layer).__name__,
            "weights": weight.numel(),
            "nonzero": nonzero,
            "sparsity_%": 100.0 * (1 - nonzero / weight.numel()),
            "biases": 0 if layer.bias is None else layer.bias.numel(),
            "macs": weight.numel() * positions[name],
            "effective_macs": nonzero * positions[name],
        })
    return pd.DataFrame(rows)


def effective_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, torch.Tensor]]:
    """Yield ``(qualified_name, module, value)`` for every parameter the model really uses.

    A masked parameter is yielded once, as the masked value the layer computes
    with, under its plain name (``net.fc1.weight``): for masks attached with
    ``torch.nn.utils.parametrize`` (the course's :mod:`course_lib.masks`) and
    with ``torch.nn.utils.prune`` (which stores ``weight_orig``) alike.
    """
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue  # the parametrization's own storage: reported through its layer below
        names = [name.removesuffix("_orig") for name, _ in module.named_parameters(recurse=False)]
        if parametrize.is_parametrized(module):
            names += list(module.parametrizations)
        for name in names:
            full = f"{module_name}.{name}" if module_name else name
            yield full, module, getattr(module, name).detach()


def _is_prunable_weight(module: nn.Module, qualified_name: str) -> bool:
    return isinstance(module, PRUNABLE) and qualified_name.endswith("weight")


def count_parameters(model: nn.Module) -> int:
    """All values the model stores as trainable state (weights, biases, BN scales).

    A ``torch.nn.utils.prune`` mask does not make the weights count twice.
    """
    return sum(value.numel() for _, _, value in effective_parameters(model))


def storage_bytes(model: nn.Module, sparse: bool = False) -> int:
    """Bytes needed to store the model's parameters, counted by formula.

    Dense: 4 bytes per float32 value. Sparse (CSR, for the weights of
    Linear/Conv2d layers, each seen as a matrix with one row per output unit):
    for each non-zero, a 4-byte value and a 4-byte column index, plus a 4-byte
    pointer per row and one more. CSR is smaller than dense only when fewer
    than about half of the weights are non-zero. Everything else stays dense.
    """
    total = 0
    for name, module, value in effective_parameters(model):
        if sparse and _is_prunable_weight(module, name):
            total += int(torch.count_nonzero(value)) * (VALUE_BYTES + INDEX_BYTES)
            total += (value.shape[0] + 1) * INDEX_BYTES
        else:
            total += value.numel() * VALUE_BYTES
    return total


def _effective_state(model: nn.Module, sparse: bool) -> dict[str, torch.Tensor]:
    """The parameters the model really uses, by name; prunable weights as int32 CSR if ``sparse``."""
    state: dict[str, torch.Tensor] = {}
    for name, module, value in effective_parameters(model):
        value = value.cpu()
        if sparse and _is_prunable_weight(module, name):
            value = _int32_csr(value)
        state[name] = value
    return state


def _int32_csr(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (one row per output unit) as CSR with int32 indices, the way it is saved."""
    csr = to_sparse_csr(weight.reshape(weight.shape[0], -1))
    return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(),
                                   csr.values(), csr.shape, check_invariants=False)


def saved_size(obj: object) -> int:
    """Bytes ``torch.save`` writes for ``obj``: a measured file size, headers and names included."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def relative_index_entries(mask: torch.Tensor, index_bits: int) -> int:
    """Entries stored when positions are coded as *gaps* of ``index_bits`` bits (Han et al.'s Deep Compression).

    Each kept weight stores the distance from the previous one (in the
    flattened, row-major weight) instead of its column. A gap longer than
    ``2**index_bits`` cannot be written, so a filler zero is stored every
    ``2**index_bits`` positions in between: the shorter the index, the more
    fillers a very sparse layer needs.
    """
    positions = torch.nonzero(mask.flatten()).flatten()
    gaps = torch.diff(positions, prepend=torch.tensor([-1], device=positions.device))
    fillers = int(((gaps - 1) // 2 ** index_bits).sum())
    return len(positions) + fillers


def storage_vs_sparsity(weight: torch.Tensor, sparsities: Sequence[float],
                        relative_bits: Sequence[int] = (8, 5)) -> pd.DataFrame:
    """Bytes of one weight matrix, magnitude-pruned to each sparsity, in several formats.

    Columns (float32 values throughout): ``dense`` and ``CSR, int32 indices``
    as ``torch.save`` writes them (measured); ``CSR, int16 columns`` (counted: 4 + 2
    bytes per kept value, a 4-byte pointer per row); and for each ``b`` in
    ``relative_bits``, ``relative b-bit`` (counted: 4 bytes + b bits per stored
    entry, fillers included, see :func:`relative_index_entries`). Deep
    Compression used 8 bits for convolutions and 5 for fully connected layers.
    """
    weight = weight.detach().cpu().reshape(weight.shape[0], -1)
    order = weight.abs().flatten().argsort(descending=True)
    rows = {}
    for sparsity in sparsities:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}.")
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        mask[order[:round((1 - sparsity) * weight.numel())]] = True
        mask = mask.reshape(weight.shape)
        kept = int(mask.sum())
        row = {"dense": saved_size(weight.clone()),
               "CSR, int32 indices": saved_size(_int32_csr(weight * mask)),
               "CSR, int16 columns": kept * (VALUE_BYTES + 2) + (weight.shape[0] + 1) * INDEX_BYTES}
        for bits in relative_bits:
            row[f"relative {bits}-bit"] = math.ceil(relative_index_entries(mask, bits) * (8 * VALUE_BYTES + bits) / 8)
        rows[sparsity] = row
    return pd.DataFrame(rows).T.rename_axis("sparsity")


def break_even(table: pd.DataFrame) -> pd.Series:
    """Per format of :func:`storage_vs_sparsity`'s table: the lowest sparsity from which on it is smaller than dense.

    ``nan`` where the format never gets smaller within the table.
    """
    crossings = {}
    for column in table.columns.drop("dense"):
        not_smaller = table.index[table[column] >= table["dense"]]
        smaller_after = table.index[table.index > not_smaller.max()] if len(not_smaller) else table.index
        crossings[column] = smaller_after.min() if len(smaller_after) else float("nan")
    return pd.Series(crossings, name="break-even sparsity")


def saved_bytes(model: nn.Module, sparse: bool = False) -> int:
    """Size in bytes of the model's parameters as ``torch.save`` writes them.

    This is measured, not counted: it includes the file format's own overhead
    (names, headers), so it is a little more than :func:`storage_bytes`.
    """
    return saved_size(_effective_state(model, sparse))


@dataclass(frozen=True)
class Latency:
    """Measured time of one forward pass, in milliseconds."""

    batch_size: int
    median_ms: float
    p25_ms: float
    p75_ms: float

    @property
    def per_image_us(self) -> float:
        """Median time per image in microseconds."""
        return 1000.0 * self.median_ms / self.batch_size


TIMING_THREADS = 1


@contextmanager
def cpu_threads(count: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with ``count`` CPU threads for PyTorch's operators (``None``: leave them as they are).

    Only the CPU has such threads; on CUDA or MPS the block runs unchanged.
    The previous thread count is restored afterwards, also after an error.
    """
    if count is None or torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _call_times(fn: Callable[[], object], repeats: int, device: torch.device | str) -> list[float]:
    """Wall time of ``repeats`` calls of ``fn()`` in milliseconds, each between two synchronisations of ``device``."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def time_call(fn: Callable[[], object], warmup: int = 5, repeats: int = 30,
              device: torch.device | str = "cpu") -> tuple[float, float, float]:
    """Median, 25th and 75th percentile of the wall time of ``fn()`` in milliseconds.

    Why warm up? The first calls allocate memory and pick kernels, and are
    several times slower than the rest. Why the median? A laptop (or a CI
    machine) is noisy; one slow outlier moves the mean but not the median.
    To *compare* functions use :func:`time_interleaved` instead.

    ``device`` is where ``fn`` computes: it is synchronised (see
    :func:`synchronize`) before the clock starts and before the clock is read.
    Prepare ``fn``'s inputs on that device beforehand: a copy inside ``fn``
    would be timed too.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    for _ in range(warmup):
        fn()
    times = _call_times(fn, repeats, device)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), q[0], q[2]


def time_interleaved(fns: Mapping[str, Callable[[], object]], rounds: int = 7, repeats: int = 10,
                     warmup: int = 5, device: torch.device | str = "cpu",
                     threads: int | None = TIMING_THREADS) -> pd.DataFrame:
    """Time several functions in alternating rounds: one row per round, one column (ms) per function.

    A laptop's speed drifts (other programs, heat, power saving; this course's
    CI machine switches between two speeds). Timing A completely and then B
    lets such a drift masquerade as a difference between them; alternating
    A, B, A, B... keeps each round's numbers comparable. Each entry is the
    *fastest* of ``repeats`` calls: other programs can only make a call
    slower, never faster. On the CPU the calls run on ``threads`` threads
    (one by default; ``None`` keeps PyTorch's setting), so that a second
    thread competing with other programs for a core cannot distort the result.

    All the functions must compute on the same ``device``, which every timed
    call synchronises (see :func:`time_call`): a table mixing a GPU and a CPU
    compares the devices, not the functions.
    """
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, repeats >= 1 and warmup >= 0, got {rounds}, {repeats}, {warmup}.")
    with cpu_threads(threads, device):
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        rows = [{name: min(_call_times(fn, repeats, device)) for name, fn in fns.items()} for _ in range(rounds)]
    return pd.DataFrame(rows)


def ratios_to_first(times: pd.DataFrame) -> pd.Series:
    """Median over rounds of each column's time divided by the first column's time *in the same round*.

    Dividing within a round cancels a drift that hit the whole round; the
    median then ignores a round in which the machine changed speed midway.
    """
    return times.div(times.iloc[:, 0], axis=0).median()


def speedups_over_first(times: pd.DataFrame) -> pd.DataFrame:
    """Each column's speed-up over the first column: the median of the per-round ratios, and their spread.

    Columns: ``speedup`` (first column's time / this column's time, median over
    rounds), ``speedup_low`` and ``speedup_high`` (25th and 75th percentile of
    the per-round ratios), ``rounds``. A claim such as "at least 1.3x faster"
    is decided when the whole spread lies on one side of 1.3.
    """
    per_round = 1.0 / times.div(times.iloc[:, 0], axis=0)
    return pd.DataFrame({"speedup": per_round.median(), "speedup_low": per_round.quantile(0.25),
                         "speedup_high": per_round.quantile(0.75), "rounds": len(times)})


def undecided(speedups: pd.DataFrame, bars: Mapping[str, float]) -> list[str]:
    """The names whose speed-up spread still straddles their bar (neither clearly above nor clearly below it)."""
    return [name for name, bar in bars.items()
            if speedups.loc[name, "speedup_low"] <= bar < speedups.loc[name, "speedup_high"]]


@torch.inference_mode()
def compare_latency(models: Mapping[str, nn.Module], batch_size: int = 256, input_shape: tuple[int, ...] | None = None,
                    rounds: int = 7, repeats: int = 10, until_decided: Mapping[str, float] | None = None,
                    max_seconds: float = 60.0) -> pd.DataFrame:
    """Forward-pass latency of several models on the same random batch, measured in alternating rounds.

    Returns one row per model: the speed-up over the *first* model with its
    spread (see :func:`speedups_over_first`), and ``latency_ms``: the first
    model's latency (median over rounds of each round's fastest call) divided
    by the speed-up. So the latencies agree with the speed-ups: each model's own
    median over rounds need not, when the machine drifts between rounds (two
    medians taken over different rounds' conditions can even swap the order of
    two models whose per-round ratio is clear). Use this, not separate
    :func:`measure_latency` calls, to compute speed-ups.

    ``until_decided`` maps model names to a speed-up bar (e.g. ``{"keep 0.5":
    1.3}``). While a model's spread straddles its bar, another ``rounds``
    rounds are measured, until every bar is decided or ``max_seconds`` have
    passed; the row's ``rounds`` says how many were measured. The table never
    hides an undecided result: compare ``speedup_low``/``speedup_high`` with
    the bar (``course_lib.claims.claim`` does, with ``interval=``).

    Every model is timed where it is, and they must all be on the same device
    (move them first, e.g. ``model.to("cpu")``); a ``ValueError`` says so
    otherwise. The batch is made on that device once, before any timing; its
    images have shape ``input_shape`` (default: the models' own ``input_shape``,
    which must then agree).
    """
    if not models:
        raise ValueError("compare_latency needs at least one model.")
    bars = dict(until_decided or {})
    unknown = set(bars) - set(models)
    if unknown:
        raise ValueError(f"until_decided names {sorted(unknown)}, which are not among the models {list(models)}.")
    devices = {name: model_device(model) for name, model in models.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"The models to compare are on different devices {devices}: a latency table must time "
                         "them all on one device. Move them first, e.g. model.to('cpu').")
    device = next(iter(devices.values()))
    shapes = {name: input_shape_of(model, input_shape) for name, model in models.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"The models to compare expect inputs of different shapes {shapes}: one batch cannot feed "
                         "them all. Pass input_shape=(...) to choose it.")
    x = torch.randn(batch_size, *next(iter(shapes.values())), device=device)
    was_training = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    fns = {name: (lambda m=m: m(x)) for name, m in models.items()}
    start = time.perf_counter()
    times = time_interleaved(fns, rounds=rounds, repeats=repeats, device=device)
    while undecided(speedups_over_first(times), bars) and time.perf_counter() - start < max_seconds:
        more = time_interleaved(fns, rounds=rounds, repeats=repeats, warmup=1, device=device)
        times = pd.concat([times, more], ignore_index=True)
    for name, model in models.items():
        model.train(was_training[name])
    speedups = speedups_over_first(times)
    return pd.DataFrame({"latency_ms": times.iloc[:, 0].median() / speedups["speedup"]}).join(speedups)


@torch.inference_mode()
def measure_latency(model: nn.Module, batch_size: int = 1, input_shape: tuple[int, ...] | None = None,
                    warmup: int = 5, repeats: int = 30) -> Latency:
    """Time one forward pass of ``model`` on a random batch, on the model's device (see :func:`time_call`).

    The batch's inputs have shape ``input_shape`` (default: ``model.input_shape``).
    """
    shape = input_shape_of(model, input_shape)
    device = model_device(model)
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *shape, device=device)
    median, p25, p75 = time_call(lambda: model(x), warmup, repeats, device=device)
    model.train(was_training)
    return Latency(batch_size, median, p25, p75)


def to_sparse_csr(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` in compressed sparse rows, without PyTorch's warning that CSR support is "beta"."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.to_sparse_csr()


def csr_matmul_works(device: torch.device | str) -> bool:
    """Whether this PyTorch can multiply a CSR matrix by a dense one on ``device``.

    The CPU and CUDA can; Apple's MPS has lacked sparse kernels in many PyTorch
    versions. A missing kernel raises ``NotImplementedError`` (a kind of
    ``RuntimeError``), so the answer is found by trying a 2x2 product.
    """
    try:
        to_sparse_csr(torch.eye(2, device=device)) @ torch.ones(2, 1, device=device)
    except RuntimeError:
        return False
    return True


@torch.inference_mode()
def csr_vs_dense_matmul(weight: torch.Tensor, batch_size: int = 256, repeats: int = 30) -> dict[str, float]:
    """Time ``weight @ x`` three ways: dense, dense with the zeros in it, and compressed sparse rows (CSR).

    ``weight`` is a (possibly pruned) Linear weight (out x in); ``x`` is a
    random (in x batch_size) batch. A dense kernel does the same work whatever
    the zeros; a CSR kernel skips them but pays for indexing, so it wins only
    when most weights are zero. Returns milliseconds (medians of alternating
    rounds, see :func:`time_interleaved`).

    The three kernels run on ``weight``'s device, with every operand prepared
    there before timing. Where that device has no CSR kernel (see
    :func:`csr_matmul_works`; Apple's MPS often has none), all three are timed
    on the CPU instead, with a warning, so that they stay comparable.
    """
    weight = weight.detach()
    if weight.device.type != "cpu" and not csr_matmul_works(weight.device):
        warnings.warn(f"PyTorch {torch.__version__} has no sparse CSR matmul on {weight.device.type}: "
                      "timing all three kernels on the CPU instead.", stacklevel=2)
        weight = weight.cpu()
    x = torch.randn(weight.shape[1], batch_size, device=weight.device)
    full = torch.randn_like(weight)
    csr = to_sparse_csr(weight)
    times = time_interleaved({"dense_ms": lambda: full @ x, "masked_dense_ms": lambda: weight @ x,
                              "csr_ms": lambda: csr @ x}, rounds=5, repeats=max(1, repeats // 5),
                             device=weight.device)
    return {name: float(ms) for name, ms in times.median().items()}


@torch.inference_mode()
def op_time_shares(model: nn.Module, batch_size: int = 256, input_shape: tuple[int, ...] | None = None,
                   repeats: int = 10, top: int = 6) -> pd.DataFrame:
    """Where the time of a forward pass goes, by PyTorch operator (``torch.profiler``).

    MACs count only convolutions and matrix products; pooling, BatchNorm and
    activations cost time too (they are limited by memory traffic, not
    arithmetic). This table shows how much. Columns: ``operator``, ``share_%``.

    The model runs where it is. On the CPU the shares are of each operator's
    own CPU time; on CUDA, of the GPU time of the kernels each operator
    launched. On Apple's MPS the profiler sees only the CPU side (launching
    the kernels, not running them), so the shares say little: a warning says
    so; profile a CPU copy instead. The inputs have shape ``input_shape``
    (default: ``model.input_shape``). On the CPU it runs on ``TIMING_THREADS``
    threads, as :func:`compare_latency` times.
    """
    shape = input_shape_of(model, input_shape)
    device = model_device(model)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    elif device.type != "cpu":
        warnings.warn(f"torch.profiler does not see the work of the {device.type} device, only the CPU launching "
                      "it; for the shares of computation, profile a CPU copy of the model.", stacklevel=2)
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *shape, device=device)
    for _ in range(3):
        model(x)
    synchronize(device)  # the warm-up's kernels must not land in the profile
    # The profiler's library (Kineto) logs its start and stop, and on a machine without a GPU an "ERROR" that it
    # found none, into the notebook's output, where a learner reads them as failures. Level 6 keeps it quiet; it is
    # read when the profiler first starts, and a level you set yourself is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with cpu_threads(TIMING_THREADS, device), torch.profiler.profile(activities=activities) as prof:
        for _ in range(repeats):  # on the threads the course times on, so that shares and latencies go together
            model(x)
        synchronize(device)
    model.train(was_training)
    if device.type == "cuda":  # operators (the CPU-side events), each with the GPU time of its own kernels
        events = [(e.key, e.self_device_time_total) for e in prof.key_averages()
                  if e.device_type == torch.autograd.DeviceType.CPU]
    else:
        events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    shares = pd.DataFrame(events, columns=["operator", "self_time"]).sort_values("self_time", ascending=False)
    shares["share_%"] = 100.0 * shares["self_time"] / total
    return shares[["operator", "share_%"]].head(top).reset_index(drop=True)


def cost_summary(model: nn.Module, batch_sizes: tuple[int, ...] = (1, 256), repeats: int = 30,
                 input_shape: tuple[int, ...] | None = None) -> dict[str, float]:
    """Every cost of one model in one row (for a table that compares models).

    ``input_shape`` is one input's shape (default: ``model.input_shape``).
    """
    input_shape = input_shape_of(model, input_shape)
    costs = layer_costs(model, input_shape)
    row: dict[str, float] = {
        "parameters": count_parameters(model),
        "nonzero_weights": int(costs["nonzero"].sum()),
        "MACs": int(costs["macs"].sum()),
        "effective_MACs": int(costs["effective_macs"].sum()),
        "bytes_dense": saved_bytes(model),
        "bytes_csr": saved_bytes(model, sparse=True),
    }
    for bs in batch_sizes:
        row[f"latency_ms_bs{bs}"] = measure_latency(model, bs, input_shape, repeats=repeats).median_ms
    return row
