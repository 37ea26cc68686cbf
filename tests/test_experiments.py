"""Experiments over seeds: a tidy table, cached per seed, summarised as mean and std; COURSE_SEED shifts seeds."""

import pytest
import torch

from course_lib import cache, experiments
from course_lib.models import build_model
from course_lib.profiles import get_profile, shifted_seed


def test_over_seeds_returns_one_row_per_seed_and_method_and_caches_each_seed(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    calls = []

    def run(seed):
        calls.append(seed)
        return [{"method": "a", "accuracy": 80.0 + seed}, {"method": "b", "accuracy": 70.0 - seed}]

    table = experiments.over_seeds("exp", {"sparsity": 0.9}, run, [0, 1, 2], progress=False)
    assert list(table.columns) == ["seed", "method", "accuracy"] and len(table) == 6
    again = experiments.over_seeds("exp", {"sparsity": 0.9}, run, [0, 1, 2, 3], progress=False)
    assert calls == [0, 1, 2, 3] and len(again) == 8  # seeds 0-2 came from the cache
    summary = experiments.mean_std(table, by="method", value="accuracy")
    assert summary.loc["a", "mean"] == pytest.approx(81.0) and summary.loc["b", "mean"] == pytest.approx(69.0)
    assert summary.loc["a", "std"] == pytest.approx(1.0) and summary.loc["a", "seeds"] == 3


def test_mean_std_of_one_seed_has_zero_spread_and_names_missing_columns():
    table = experiments.pd.DataFrame([{"seed": 0, "method": "a", "accuracy": 1.0}])
    assert experiments.mean_std(table, "method", "accuracy").loc["a", "std"] == 0.0
    with pytest.raises(ValueError, match="no column"):
        experiments.mean_std(table, "sparsity", "accuracy")


def test_profiles_name_their_seeds():
    assert get_profile("full").seeds() == [0, 1, 2] and len(get_profile("quick").seeds()) >= 1


def test_course_seed_shifts_every_seed(monkeypatch):
    before = build_model("lenet300", seed=0).state_dict()
    monkeypatch.setenv("COURSE_SEED", "3")
    assert shifted_seed(0) == 3
    shifted = build_model("lenet300", seed=0).state_dict()
    monkeypatch.setenv("COURSE_SEED", "0")
    assert all(torch.equal(shifted[k], build_model("lenet300", seed=3).state_dict()[k]) for k in before)
    assert not all(torch.equal(before[k], shifted[k]) for k in before)
    monkeypatch.setenv("COURSE_SEED", "three")
    with pytest.raises(ValueError, match="COURSE_SEED must be a whole number"):
        shifted_seed(0)
