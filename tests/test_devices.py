"""The library is correct on every device: inputs follow the model, plots get CPU data, timings synchronise.

Tests taking the ``device`` fixture (tests/conftest.py) run once per device of
this machine: the CPU always, CUDA and Apple's MPS when present. So on a
machine with a GPU this file checks the GPU; on a CPU-only machine the
synchronisation is checked with a fake ``torch.cuda.synchronize``.
"""

from types import SimpleNamespace

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from course_lib import costs, widgets  # noqa: E402
from course_lib.chapters import ch02_structure_and_speed as ch02  # noqa: E402
from course_lib.models import build_model  # noqa: E402
from course_lib.pruning import procedures  # noqa: E402
from course_lib.pruning.lottery import Ticket  # noqa: E402
from course_lib.pruning.selection import unstructured_masks  # noqa: E402
from course_lib.training import History, TrainConfig, evaluate, model_device  # noqa: E402


def record_synchronize(monkeypatch: pytest.MonkeyPatch) -> list[torch.device]:
    """Make ``costs.synchronize`` note each device it waits for (and still wait); return the notes."""
    calls: list[torch.device] = []
    real = costs.synchronize

    def recording(device: torch.device | str) -> None:
        calls.append(torch.device(device))
        real(device)

    monkeypatch.setattr(costs, "synchronize", recording)
    return calls


class InputSpy(nn.Module):
    """A linear layer that remembers the device and the storage of every input it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.seen: list[tuple[torch.device, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.device, x.data_ptr()))
        return self.linear(x.flatten(1))


# The synchronisation helper, with fake device functions: checked on any machine.

def test_synchronize_waits_for_the_device_it_is_given(monkeypatch):
    waited: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append(("mps", None)))
    costs.synchronize("cpu")
    assert waited == [], "the CPU has nothing to wait for"
    costs.synchronize("cuda:1")
    costs.synchronize(torch.device("mps"))
    assert waited == [("cuda", torch.device("cuda:1")), ("mps", None)]


def test_time_call_synchronises_before_each_clock_read(monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(costs, "time", SimpleNamespace(perf_counter=lambda: events.append("clock") or 0.0))
    costs.time_call(lambda: events.append("call"), warmup=0, repeats=2, device="cuda")
    # Wait for earlier work, start the clock, queue the work, wait for it, read the clock.
    assert events == ["sync", "clock", "call", "sync", "clock"] * 2


def test_time_interleaved_synchronises_every_timed_call(monkeypatch):
    synced = record_synchronize(monkeypatch)
    costs.time_interleaved({"a": lambda: None, "b": lambda: None}, rounds=3, repeats=4, warmup=0, device="cpu")
    assert len(synced) == 2 * 3 * 4 * 2 and set(synced) == {torch.device("cpu")}


def test_models_on_different_devices_are_not_compared():
    here, nowhere = nn.Linear(784, 10), nn.Linear(784, 10, device="meta")  # "meta": a device with no data
    with pytest.raises(ValueError, match="different devices"):
        costs.compare_latency({"cpu": here, "meta": nowhere}, batch_size=2, input_shape=(784,))


# Per device.

def test_compare_latency_feeds_one_input_made_on_the_models_device(device, monkeypatch):
    synced = record_synchronize(monkeypatch)
    spies = {"a": InputSpy().to(device), "b": InputSpy().to(device)}
    latency = costs.compare_latency(spies, batch_size=4, rounds=2, repeats=3, input_shape=(1, 28, 28))
    assert (latency["latency_ms"] > 0).all() and latency.loc["a", "speedup"] == 1.0
    for spy in spies.values():
        assert {d.type for d, _ in spy.seen} == {device.type}, "the input must be on the model's device"
    pointers = {p for spy in spies.values() for _, p in spy.seen}
    assert len(pointers) == 1, "one input, made once: no copy inside the timed call"
    assert len(synced) >= 2 * 2 * 3 * 2 and {d.type for d in synced} == {device.type}


def test_measure_latency_and_cost_summary_time_on_the_models_device(device, monkeypatch):
    synced = record_synchronize(monkeypatch)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to(device)
    assert costs.measure_latency(model, batch_size=2, repeats=3, input_shape=(1, 28, 28)).median_ms > 0
    row = costs.cost_summary(model, batch_sizes=(2,), repeats=3, input_shape=(1, 28, 28))
    assert row["MACs"] == 7840 and row["latency_ms_bs2"] > 0
    assert len(synced) >= 2 * 3 * 2 and {d.type for d in synced} == {device.type}


def test_csr_timing_runs_on_the_weights_device_or_says_why_not(device, monkeypatch):
    synced = record_synchronize(monkeypatch)
    weight = (torch.randn(64, 128) * (torch.rand(64, 128) > 0.9)).to(device)
    if costs.csr_matmul_works(device):
        times = costs.csr_vs_dense_matmul(weight, batch_size=16, repeats=5)
        timed_on = device.type
    else:  # e.g. Apple's MPS in some PyTorch versions
        with pytest.warns(UserWarning, match="on the CPU instead"):
            times = costs.csr_vs_dense_matmul(weight, batch_size=16, repeats=5)
        timed_on = "cpu"
    assert set(times) == {"dense_ms", "masked_dense_ms", "csr_ms"} and all(t > 0 for t in times.values())
    assert synced and {d.type for d in synced} == {timed_on}


def test_op_time_shares_profile_the_model_where_it_is(device):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten()).to(device)
    if device.type == "mps":
        with pytest.warns(UserWarning, match="profile a CPU copy"):
            costs.op_time_shares(model, batch_size=4, repeats=2, input_shape=(1, 28, 28))
        return
    shares = costs.op_time_shares(model, batch_size=4, repeats=2, input_shape=(1, 28, 28))
    assert 0 < shares["share_%"].sum() <= 100.0 + 1e-6 and any("conv" in op for op in shares.operator)


def test_structured_sweep_compares_and_times_on_the_right_devices(device, tiny_splits):
    # Fine-tuning runs on the fastest device; with a dense model on another one
    # (the "cpu" case on a GPU machine) the probe must follow the fine-tuned
    # model, and the shrunk models must join the dense one to be timed.
    model = build_model("lenet300").to(device)
    table, shrunk = ch02.structured_sweep(model, tiny_splits, [1.0, 0.5], procedures.units("l1"),
                                                TrainConfig(epochs=1), latency_rounds=2, batch_size=8,
                                                progress=False)
    assert table.loc[0.5, "max_output_diff"] < 1e-5, "surgery changed the outputs"
    assert model_device(shrunk[0.5]).type == device.type, "timed and returned on the dense model's device"
    assert model_device(model).type == device.type, "the dense model stays where it was"
    assert (table["latency_ms"] > 0).all()


def test_widget_helpers_take_a_model_on_any_device(device, tiny_splits):
    model = build_model("lenet300").to(device)
    probs = widgets.class_probabilities(model, tiny_splits.val)
    assert probs.device.type == "cpu" and probs.shape == (32, 10)
    masks = unstructured_masks(model, 0.7)
    expected = evaluate(procedures.one_shot(model, 0.7, procedures.magnitude()).model, tiny_splits.val)
    assert widgets.masked_accuracy(model, masks, tiny_splits.val) == pytest.approx(expected)

    box = widgets.misclassified_browser(model, tiny_splits.val, tiny_splits.classes)
    assert "mistake 1 of" in box.children[1].value

    box = widgets.sparsity_explorer(model, tiny_splits.val, curve_points=(0, 0.5))
    slider, caption = box.children[0].children[1], box.children[1]
    slider.value = 50
    assert "to 50 %" in caption.value


def test_ticket_viewer_takes_models_on_any_device(device, tiny_splits):
    def ticket(round_: int, sparsity: float) -> Ticket:
        model = build_model("lenet300", seed=round_).to(device)
        return Ticket(round_, unstructured_masks(model, sparsity), model, History())

    tickets = [ticket(0, 0.2), ticket(1, 0.5)]
    reinits = {r: build_model("lenet300", seed=10 + r).to(device) for r in (0, 1)}
    box = widgets.ticket_viewer(tickets, reinits, tiny_splits.val)
    slider, caption = box.children[0], box.children[1]
    assert "round 1" in caption.value and "50.0 % of weights" in caption.value
    slider.value = 0
    assert "round 0" in caption.value and "80.0 % of weights" in caption.value
