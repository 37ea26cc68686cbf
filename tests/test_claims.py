"""claims.claim: prints the margin, fails with the numbers, logs for the seed sweep, and leaves noisy timings undecided."""

from __future__ import annotations

import json

import pytest

from course_lib import claims


def test_a_claim_that_holds_returns_its_margin_and_prints_it(capsys):
    assert claims.claim("1", "global minus local", 6.5, ">=", 5.0) == pytest.approx(1.5)
    assert "claim 1: global minus local: 6.50 >= 5.00 holds (margin +1.50 points)" in capsys.readouterr().out
    assert claims.claim("2", "cost of shuffling", 0.4, "<", 1.0, spread=0.3) == pytest.approx(0.6)
    assert "seed std 0.30" in capsys.readouterr().out


def test_a_claim_that_fails_names_itself_and_its_numbers():
    with pytest.raises(claims.ClaimFailed, match=r"claim 3 failed: SET minus static is -0.20, which is not > 0.00 "
                                                 r"\(margin -0.20 points\)"):
        claims.claim("3", "SET minus static", -0.2, ">", 0.0)
    with pytest.raises(AssertionError):  # nbval and the seed sweep see an ordinary failed assert
        claims.claim("3", "SET minus static", 0.0, ">", 0.0)
    assert claims.claim("3", "SET minus static", 0.0, ">=", 0.0) == 0.0


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="Unknown comparison"):
        claims.claim("1", "x", 1.0, "=>", 0.0)
    with pytest.raises(ValueError, match="finite"):
        claims.claim("1", "x", float("nan"), ">", 0.0)


def test_every_claim_is_logged_when_the_sweep_asks(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.CLAIMS_LOG_ENV_VAR, str(log))
    monkeypatch.setenv("COURSE_SEED", "2")
    claims.claim("1", "a", 2.0, ">", 1.0)
    with pytest.raises(claims.ClaimFailed):
        claims.claim("2", "b", 2.0, "<", 1.0)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["label"], r["held"], r["margin"], r["course_seed"]) for r in records] == [("1", True, 1.0, 2),
                                                                                          ("2", False, -1.0, 2)]


def test_a_measured_interval_decides_on_both_ends(capsys):
    assert claims.claim("6", "speed-up", 1.6, ">", 1.2, unit="x", interval=(1.5, 1.7)) == pytest.approx(0.4)
    with pytest.raises(claims.ClaimFailed, match="measured 0.95-1.05"):
        claims.claim("6", "speed-up", 1.0, ">", 1.2, unit="x", interval=(0.95, 1.05))
    capsys.readouterr()
    # Straddling the bar: the estimate alone would fail, but the measurement cannot tell, so nothing fails.
    claims.claim("6", "speed-up", 1.15, ">", 1.2, unit="x", interval=(0.9, 1.4))
    assert "UNDECIDED: the machine was too noisy to tell" in capsys.readouterr().out


def test_a_paired_verdict_names_a_direction_only_when_every_seed_agrees():
    assert claims.paired_verdict({0: 0.4, 1: 0.3}, "SET", "static").endswith("SET ahead on all 2 seeds")
    assert claims.paired_verdict({0: -0.4, 1: -0.3, 2: -1.2}, "SET", "static").endswith("static ahead on all 3 seeds")
    assert "a seed's difference is exactly zero" in claims.paired_verdict({0: 0.4, 1: 0.0}, "SET", "static")
    # the other seeds disagreeing in sign is the news, not the tie (chapter 5, seed 5: -0.55, +0.18, 0.00)
    assert "the seeds disagree (and a seed's difference is exactly zero)" in \
        claims.paired_verdict({0: -0.55, 1: 0.18, 2: 0.0}, "a", "b")
    line = claims.paired_verdict({0: 0.4, 1: -0.1}, "SET", "static")
    assert claims.who_leads({0: -0.4, 1: -0.3, 2: -1.2}, "SET", "static") == \
        "static, on every seed (mean 0.63 points, smallest 0.30)"
    assert claims.who_leads({0: 0.4, 1: 0.1}, "SET", "static") == \
        "not separated (mean +0.25 points; per seed +0.40, +0.10)"  # the leader rule, not the sign
    assert "mean +0.15 points" in line and line.endswith("not separated: the seeds disagree")
    with pytest.raises(ValueError, match="finite"):
        claims.paired_verdict({0: float("nan")}, "SET", "static")


def test_a_paired_verdict_reads_a_difference_within_the_test_sets_noise_as_no_direction():
    line = claims.paired_verdict({0: 0.4, 1: 0.1}, "SET", "static")  # 0.1 points: ten of 10,000 test images
    assert "not separated: SET ahead on every seed, but by less than the test set's noise (0.25 points)" in line
    assert "static ahead on every seed" in claims.paired_verdict({0: -0.02, 1: -0.9}, "SET", "static")
    assert claims.paired_verdict({0: 0.04, 1: 0.02}, "RigL", "SET", unit="").endswith("RigL ahead on all 2 seeds")
    assert "noise floor (0.05)" in claims.paired_verdict({0: 0.04, 1: 0.2}, "RigL", "SET", unit="", noise=0.05)


def test_the_leader_is_the_verdicts_direction_for_code_to_read():
    from course_lib.claims import leader
    assert leader({0: 1.0, 1: 0.5}, "A", "B") == "A"
    assert leader({0: -1.0, 1: -0.5}, "A", "B") == "B"
    assert leader({0: 1.0, 1: 0.1}, "A", "B") is None  # one seed within the test set's noise
    assert leader({0: 1.0, 1: -1.0}, "A", "B") is None
    assert leader({}, "A", "B") is None


def test_the_noise_floor_grows_for_a_smaller_split():
    from course_lib.claims import TEST_NOISE, accuracy_noise
    assert accuracy_noise(10_000) == pytest.approx(TEST_NOISE)
    assert accuracy_noise(2_000) == pytest.approx(TEST_NOISE * 5 ** 0.5)
    with pytest.raises(ValueError, match="positive"):
        accuracy_noise(0)


def test_a_verdict_counts_the_seeds_within_the_noise():
    line = claims.paired_verdict({0: -0.19, 1: -0.23}, "slimming", "uniform")
    assert line.endswith("uniform ahead on every seed, but by less than the test set's noise (0.25 points) on 2 of 2")


def test_why_not_separated_says_which_kind_of_not_separated():
    from course_lib.claims import why_not_separated
    assert why_not_separated({0: 0.9, 1: 0.6}) == ""  # separated: nothing to explain
    assert why_not_separated({0: 0.9, 1: -0.6}) == "the seeds disagree"
    assert why_not_separated({0: 0.9, 1: -0.6, 2: 0.0}) == "the seeds disagree (and a seed's difference is exactly zero)"
    assert why_not_separated({0: 0.9, 1: 0.0}) == "a seed's difference is exactly zero"
    # a difference of differences, every seed inside its floor (chapter 6, seed 17: +0.17, +0.23, +0.00)
    assert why_not_separated({0: 0.17, 1: 0.23, 2: 0.0}, noise=0.35, noise_name="the floor") == \
        "within the floor on every seed"
    assert why_not_separated({0: 0.9, 1: 0.1, 2: 0.2}) == "ahead on every seed, but by less than the noise on 2 of 3"
    assert why_not_separated({0: -0.9, 1: -0.1}) == "ahead on every seed, but by less than the noise on one"
    assert why_not_separated({0: 0.1}, first="design", second="global") == "one run, design ahead by less than the noise"
    assert claims.paired_verdict({0: 0.9}, "design", "global").endswith("design ahead (one run)")
    assert why_not_separated({0: -0.9, 1: -0.1}, first="A", second="B").startswith("B ahead on every seed")


def test_ranked_joins_neighbours_within_the_tie_and_orders_the_others():
    assert claims.ranked({"b": 85.96, "a": 86.07, "c": 83.92}) == "a 86.07 ≈ b 85.96 > c 83.92"
    assert claims.ranked({"b": 85.96, "a": 86.07}, tie=0.05) == "a 86.07 > b 85.96"
