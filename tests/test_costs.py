"""Cost metrics on layers small enough to check by hand."""

import pandas as pd
import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from course_lib import claims, costs


def test_linear_macs_and_nonzeros_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 0, 0], [3, 4, 0, 0]]))
    row = costs.layer_costs(model, input_shape=(4,)).iloc[0]
    assert (row.weights, row.nonzero, row.biases, row.macs, row.effective_macs) == (12, 4, 3, 12, 4)
    assert row["sparsity_%"] == pytest.approx(100 * 8 / 12)


def test_conv_macs_count_every_output_position():
    # 3 filters of 2x3x3 weights on a 5x5 map with padding 1 -> 5x5 outputs: 3*2*9*25 MACs.
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 4, 3, stride=2))
    table = costs.layer_costs(model, input_shape=(2, 5, 5))
    assert table.macs.tolist() == [3 * 2 * 9 * 25, 4 * 3 * 9 * 2 * 2]
    assert costs.macs_per_output(nn.Conv2d(8, 8, 3, groups=4)) == 2 * 9


def test_macs_of_unsupported_layer_is_a_clear_error():
    with pytest.raises(TypeError, match="Linear and nn.Conv2d"):
        costs.macs_per_output(nn.LSTM(3, 3))


def test_storage_bytes_by_hand():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 0, 0], [3, 4, 5, 0]]))
    model = nn.Sequential(layer)
    assert costs.storage_bytes(model) == (12 + 3) * 4
    # CSR: 5 values + 5 column indices (4 bytes each), 3+1 row pointers, and the dense bias.
    assert costs.storage_bytes(model, sparse=True) == 5 * 8 + 4 * 4 + 3 * 4


def test_saved_bytes_measures_the_formula_plus_format_overhead():
    model = nn.Sequential(nn.Linear(300, 200), nn.Linear(200, 10))
    with torch.no_grad():
        model[0].weight[:, 30:] = 0  # 90 % zeros
    for sparse in (False, True):
        counted, measured = costs.storage_bytes(model, sparse), costs.saved_bytes(model, sparse)
        assert counted <= measured <= counted + 8_000, (sparse, counted, measured)
    assert costs.saved_bytes(model, sparse=True) < costs.saved_bytes(model) / 3


def test_masked_models_are_counted_once_and_by_their_masked_weights():
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 10))
    dense_params = costs.count_parameters(model)
    prune.l1_unstructured(model[1], "weight", amount=0.7)
    assert costs.count_parameters(model) == dense_params == 110
    assert costs.layer_costs(model, input_shape=(10,)).nonzero.item() == 30
    assert costs.storage_bytes(model) == 110 * 4


def test_latency_is_a_sane_median():
    result = costs.measure_latency(nn.Linear(784, 10), batch_size=8, input_shape=(784,), repeats=15)
    assert 0 < result.p25_ms <= result.median_ms <= result.p75_ms
    assert result.per_image_us == pytest.approx(1000 * result.median_ms / 8)
    with pytest.raises(ValueError, match="repeats"):
        costs.measure_latency(nn.Linear(3, 3), repeats=0, input_shape=(3,))


def test_cost_summary_has_every_cost():
    row = costs.cost_summary(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), batch_sizes=(1, 4), repeats=3,
                             input_shape=(1, 28, 28))
    assert row["parameters"] == 7850 and row["MACs"] == 7840
    assert {"bytes_dense", "bytes_csr", "latency_ms_bs1", "latency_ms_bs4"} <= row.keys()


def test_csr_matmul_timing_reports_all_three_kernels():
    weight = torch.randn(64, 128) * (torch.rand(64, 128) > 0.99)
    times = costs.csr_vs_dense_matmul(weight, batch_size=32, repeats=3)
    assert set(times) == {"dense_ms", "masked_dense_ms", "csr_ms"} and all(t > 0 for t in times.values())


def test_op_time_shares_add_up_to_at_most_100_percent():
    shares = costs.op_time_shares(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten()), batch_size=4,
                                    repeats=2, input_shape=(1, 28, 28))
    assert list(shares.columns) == ["operator", "share_%"] and 0 < shares["share_%"].sum() <= 100.0 + 1e-6
    assert any("conv" in op for op in shares.operator)


def test_interleaved_timing_compares_like_with_like():
    slow_calls = []
    times = costs.time_interleaved({"fast": lambda: None, "slow": lambda: slow_calls.append(sum(range(20_000)))},
                                     rounds=3, repeats=4, warmup=1)
    assert times.shape == (3, 2) and (times["slow"] > times["fast"]).all()
    assert len(slow_calls) == 1 + 3 * 4  # the warm-up, then the repeats of each round
    latency = costs.compare_latency({"a": nn.Sequential(nn.Flatten(), nn.Linear(784, 10))}, batch_size=2,
                                      rounds=2, repeats=2, input_shape=(1, 28, 28))
    assert latency.loc["a", "speedup"] == 1.0 and latency.loc["a", "latency_ms"] > 0
    models = {"small": nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "big": nn.Sequential(nn.Flatten(), nn.Linear(784, 900))}
    latency = costs.compare_latency(models, batch_size=8, rounds=3, repeats=2, input_shape=(1, 28, 28))
    ratio = latency.loc["small", "latency_ms"] / latency.loc["big", "latency_ms"]
    assert ratio == pytest.approx(latency.loc["big", "speedup"]), "the latencies must agree with the speed-ups"


def test_each_round_keeps_the_fastest_call_on_one_cpu_thread(monkeypatch):
    seen_threads = []
    before = torch.get_num_threads()
    calls = iter([5.0, 1.0, 3.0] * 2)  # ms of successive calls: the fastest of each round's three is 1.0
    monkeypatch.setattr(costs, "_call_times", lambda fn, repeats, device: [next(calls) for _ in range(repeats)])
    times = costs.time_interleaved({"a": lambda: seen_threads.append(torch.get_num_threads())}, rounds=2, repeats=3,
                                   warmup=1)
    assert times["a"].tolist() == [1.0, 1.0] and seen_threads == [costs.TIMING_THREADS]
    assert torch.get_num_threads() == before  # restored afterwards


def _fake_rounds(monkeypatch, rounds_of_times):
    """Make time_interleaved return the given per-round times, one call after another."""
    batches = iter(rounds_of_times)
    monkeypatch.setattr(costs, "time_interleaved", lambda fns, rounds, repeats, warmup=5, device="cpu":
                        pd.DataFrame(next(batches), columns=list(fns)))


def _two_models():
    return {"dense": nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
            "small": nn.Sequential(nn.Flatten(), nn.Linear(784, 10))}


def test_a_straddling_speedup_is_measured_again_until_decided(monkeypatch):
    noisy = [[2.0, 1.0], [2.0, 2.0], [2.0, 1.3], [2.0, 2.5]]  # per-round speed-ups 2.0, 1.0, 1.5, 0.8
    clear = [[2.0, 1.0]] * 12  # 2.0 in every round
    _fake_rounds(monkeypatch, [noisy, clear])
    latency = costs.compare_latency(_two_models(), batch_size=2, input_shape=(784,), rounds=4,
                                    until_decided={"small": 1.3})
    assert latency.loc["small", "rounds"] == 16 and latency.loc["small", "speedup_low"] > 1.3


def test_an_undecided_speedup_stops_at_the_time_cap_and_says_so(monkeypatch):
    noisy = [[2.0, 1.0], [2.0, 2.0], [2.0, 1.3], [2.0, 2.5]]
    _fake_rounds(monkeypatch, [noisy] * 1000)
    latency = costs.compare_latency(_two_models(), batch_size=2, input_shape=(784,), rounds=4,
                                    until_decided={"small": 1.3}, max_seconds=0.0)
    assert latency.loc["small", "rounds"] == 4
    assert costs.undecided(latency, {"small": 1.3}) == ["small"]
    with pytest.raises(ValueError, match="not among the models"):
        costs.compare_latency(_two_models(), batch_size=2, input_shape=(784,), until_decided={"smal": 1.3})


def test_two_equal_models_never_pass_a_speedup_claim(capsys):
    # Real timings: the "pruned" model is the dense one itself. However busy the machine, the claim must not
    # hold; it fails, or (if the machine is too noisy to tell even after the cap) it says it cannot decide.
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    latency = costs.compare_latency({"dense": model, "same": model}, batch_size=64, input_shape=(784,), rounds=5,
                                    repeats=3, until_decided={"same": 1.3}, max_seconds=5.0)
    low, high = latency.loc["same", ["speedup_low", "speedup_high"]]
    try:
        claims.claim("2", "speed-up of an unpruned copy", latency.loc["same", "speedup"], ">=", 1.3, unit="x",
                     interval=(low, high))
    except claims.ClaimFailed:
        return
    assert "UNDECIDED" in capsys.readouterr().out


def test_ratios_are_taken_within_rounds():
    # Round 2 ran on a machine twice as slow: per-round ratios are unaffected, medians of times are not.
    times = pd.DataFrame({"a": [1.0, 2.0, 1.0], "b": [2.0, 4.0, 2.0]})
    assert costs.ratios_to_first(times).to_dict() == {"a": 1.0, "b": 2.0}
