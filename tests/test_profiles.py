"""Profiles are chosen by name or COURSE_PROFILE; a typo is a clear error."""

import pytest

from course_lib.profiles import PROFILE_ENV_VAR, get_profile


def test_default_is_the_lecture_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV_VAR, raising=False)
    assert get_profile().name == "full"


def test_env_var_chooses_the_profile(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV_VAR, " Quick ")
    assert get_profile().name == "quick"


def test_unknown_profile_lists_the_choices():
    with pytest.raises(ValueError, match=r"\['full', 'quick'\]"):
        get_profile("fast")


def test_quick_is_smaller_than_full_everywhere():
    quick, full = get_profile("quick"), get_profile("full")
    assert quick.train_size < 60_000 - full.val_size if full.train_size is None else full.train_size
    assert all(quick.epochs[m] <= full.epochs[m] for m in full.epochs)
    assert all(quick.accuracy_bar[m] < full.accuracy_bar[m] for m in full.accuracy_bar)


def test_the_seeds_label_says_which_seeds_the_generators_used(monkeypatch):
    from course_lib.profiles import SEED_ENV_VAR, seeds_label
    monkeypatch.delenv(SEED_ENV_VAR, raising=False)
    assert seeds_label([0, 1]) == "seeds [0, 1]"
    monkeypatch.setenv(SEED_ENV_VAR, "3")
    assert seeds_label([0, 1]) == "seeds [0, 1] (COURSE_SEED=3: the generators were seeded [3, 4])"
