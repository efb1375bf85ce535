"""Each fraud signal on constructed sequences where the right verdict is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.fraud import (
    DEFAULT_FRAUD_CONFIG,
    EMPTY_REFERENCE,
    FraudConfig,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    add_response_time,
    answers_in_window,
    collusion,
    combine,
    difficulty_proxy,
    empty_histogram,
    histogram_quantile,
    is_uncommon,
    lz_star,
    normalize_response,
    observe,
    person_misfit,
    rapid_response,
    shared_device,
    velocity,
)
from scheduler.irt import NormalPrior


def reference_of(times_ms: list[float], correct_rate: float = 0.7) -> ResponseReference:
    reference = EMPTY_REFERENCE
    for k, ms in enumerate(times_ms):
        reference = observe(
            reference, response_time_ms=int(ms), correct=(k % 10) < correct_rate * 10
        )
    return reference


def typical_item(median_ms: float = 10_000.0, n: int = 200, seed: int = 0) -> ResponseReference:
    """An item whose answers take a lognormal time around ``median_ms``."""
    rng = np.random.default_rng(seed)
    return reference_of(list(rng.lognormal(math.log(median_ms), 0.5, n)))


# --- histograms ----------------------------------------------------------------------


def test_histogram_median_recovers_the_sample_median_within_a_bin() -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(math.log(8_000), 0.7, 5_000)
    counts = empty_histogram()
    for ms in samples:
        counts = add_response_time(counts, float(ms), cap=1e9)
    # Bins are x1.19 wide; interpolation inside the bin does better than that.
    assert histogram_quantile(counts, 0.5) == pytest.approx(np.median(samples), rel=0.06)
    assert histogram_quantile(counts, 0.1) == pytest.approx(np.quantile(samples, 0.1), rel=0.08)


def test_halving_at_the_cap_keeps_the_shape_and_bounds_the_weight() -> None:
    counts = empty_histogram()
    for _ in range(100):
        counts = add_response_time(counts, 5_000, cap=64)
    assert sum(counts) <= 64
    assert histogram_quantile(counts, 0.5) == pytest.approx(5_000, rel=0.2)


def test_empty_histogram_has_no_median() -> None:
    assert math.isnan(histogram_quantile(empty_histogram(), 0.5))


# --- rapid response -------------------------------------------------------------------


def test_rapid_correct_answer_fires_with_weight_growing_with_speed() -> None:
    item = typical_item()
    slow = rapid_response(response_time_ms=800, correct=True, item=item, skill=None)
    fast = rapid_response(response_time_ms=300, correct=True, item=item, skill=None)
    assert slow is not None
    assert fast is not None
    assert slow.signal is FraudSignalKind.RAPID_RESPONSE
    config = DEFAULT_FRAUD_CONFIG
    assert config.rapid_min_weight <= slow.weight < fast.weight <= config.rapid_max_weight
    # Alone, even an instant answer stays below a 0.8 alert.
    assert config.rapid_max_weight < 0.8
    assert "item median" in fast.detail


def test_typical_and_moderately_fast_answers_do_not_fire() -> None:
    item = typical_item()
    for ms in (10_000, 5_000, 1_500):
        assert rapid_response(response_time_ms=ms, correct=True, item=item, skill=None) is None


def test_rapid_wrong_answer_weighs_less_than_a_rapid_right_one() -> None:
    item = typical_item()
    right = rapid_response(response_time_ms=500, correct=True, item=item, skill=None)
    wrong = rapid_response(response_time_ms=500, correct=False, item=item, skill=None)
    assert right is not None
    assert wrong is not None
    assert wrong.weight == pytest.approx(right.weight * DEFAULT_FRAUD_CONFIG.rapid_wrong_factor)


def test_cold_item_falls_back_to_its_skill_then_to_the_floor() -> None:
    new_item = typical_item(n=5)
    skill = typical_item(median_ms=20_000, seed=3)
    from_skill = rapid_response(response_time_ms=1_500, correct=True, item=new_item, skill=skill)
    assert from_skill is not None
    assert "skill median" in from_skill.detail
    # Neither item nor skill has enough answers: only sub-floor times count.
    assert rapid_response(response_time_ms=1_500, correct=True, item=new_item, skill=None) is None
    floor = rapid_response(response_time_ms=150, correct=True, item=new_item, skill=None)
    assert floor is not None
    assert "cold start" in floor.detail


def test_unreported_response_time_gives_no_verdict() -> None:
    assert rapid_response(response_time_ms=0, correct=True, item=typical_item(), skill=None) is None


# --- person fit -----------------------------------------------------------------------


def test_lz_star_is_standard_normal_for_answers_that_follow_the_model() -> None:
    rng = np.random.default_rng(7)
    values = []
    for _ in range(1_500):
        n = 30
        a = rng.lognormal(0.0, 0.3, n)
        b = rng.normal(0.0, 1.0, n)
        theta = rng.normal()
        u = (rng.random(n) < 1 / (1 + np.exp(-a * (theta - b)))).astype(float)
        values.append(lz_star(a, b, np.zeros(n), u).lz_star)
    lz = np.array(values)
    assert abs(lz.mean()) < 0.15
    assert abs(lz.std() - 1.0) < 0.15
    # The one-sided 1 % point flags about 1 % of learners who follow the model.
    assert 0.003 < (lz < -2.326).mean() < 0.03


def test_lz_star_matches_the_closed_form_for_rasch_items_and_a_flat_prior() -> None:
    # Rasch, ML ability (a prior so wide it is flat): sum (u - P) = 0 at the estimate, so
    # the numerator is -sum (u - P) b and W*_i = theta - b_i - c_n.
    b = np.linspace(-2.0, 2.0, 12)
    u = np.array([1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    fit = lz_star(np.ones(12), b, np.zeros(12), u, NormalPrior(sd=1e4, n_points=81))
    p = 1 / (1 + np.exp(-(fit.ability - b)))
    pq = p * (1 - p)
    c_n = float(np.sum(pq * (fit.ability - b)) / np.sum(pq))
    expected = -float(np.sum((u - p) * b)) / math.sqrt(
        float(np.sum((fit.ability - b - c_n) ** 2 * pq))
    )
    assert fit.lz_star == pytest.approx(expected, rel=1e-4)


def test_right_on_hard_wrong_on_easy_is_flagged_as_misfit() -> None:
    b = list(np.linspace(-2.5, 2.5, 30))
    cheater = [1.0 if difficulty > 0.5 else 0.0 for difficulty in b]
    honest = [1.0 if difficulty < 0.0 else 0.0 for difficulty in b]
    ones, zeros = [1.0] * 30, [0.0] * 30
    found = person_misfit(ones, b, zeros, cheater)
    assert found is not None
    assert found.signal is FraudSignalKind.PERSON_MISFIT
    assert found.weight == pytest.approx(DEFAULT_FRAUD_CONFIG.misfit_max_weight)
    assert person_misfit(ones, b, zeros, honest) is None


def test_misfit_needs_enough_answers() -> None:
    few = DEFAULT_FRAUD_CONFIG.misfit_min_answers - 1
    b = list(np.linspace(-2.5, 2.5, few))
    assert person_misfit([1.0] * few, b, [0.0] * few, [float(x > 0) for x in b]) is None


def test_difficulty_proxy_inverts_the_marginal_correct_rate() -> None:
    easy = ResponseReference(empty_histogram(), 1_000, 900)
    hard = ResponseReference(empty_histogram(), 1_000, 200)
    assert difficulty_proxy(easy, None) < 0 < difficulty_proxy(hard, None)
    # With a N(0, 1) population, a Rasch item at b answers right ~ sigma(-b / 1.18).
    rng = np.random.default_rng(2)
    b_true = 0.8
    correct = int(
        np.sum(rng.random(20_000) < 1 / (1 + np.exp(-(rng.normal(size=20_000) - b_true))))
    )
    recovered = difficulty_proxy(ResponseReference(empty_histogram(), 20_000, correct), None)
    assert recovered == pytest.approx(b_true, abs=0.08)


# --- collusion ------------------------------------------------------------------------


def test_answer_is_uncommon_only_among_enough_other_wrong_answers() -> None:
    # 2 of 40 wrong answers were this one: 5 % share, uncommon.
    assert is_uncommon(answer_count=2, wrong_total=40, group_matches=0)
    # A frequent misconception (12 of 40) is not.
    assert not is_uncommon(answer_count=12, wrong_total=40, group_matches=0)
    # Too few wrong answers to judge: no verdict.
    assert not is_uncommon(answer_count=0, wrong_total=5, group_matches=0)


def test_the_group_own_answers_do_not_make_it_look_common() -> None:
    # 6 colluders gave it; 40 other wrong answers never did.
    assert is_uncommon(answer_count=6, wrong_total=46, group_matches=6)
    assert not is_uncommon(answer_count=6, wrong_total=46, group_matches=0)


def test_collusion_weight_grows_with_partners() -> None:
    assert collusion(0, "x") is None
    weights = [e.weight for k in (1, 2, 3) if (e := collusion(k, "42")) is not None]
    assert weights == [0.5, 0.75, 0.875]


def test_responses_compare_without_case_or_spacing() -> None:
    assert normalize_response("  X = 4 ") == normalize_response("x=4") == "x=4"
    assert normalize_response("   ") is None


# --- velocity and device ---------------------------------------------------------------


def test_velocity_fires_above_the_limit_within_the_window_only() -> None:
    limit = DEFAULT_FRAUD_CONFIG.velocity_max_answers
    burst = [1_000.0 + 2.0 * k for k in range(limit + 5)]  # one answer per 2 s
    found = velocity(burst, burst[-1])
    assert found is not None
    assert found.signal is FraudSignalKind.IMPOSSIBLE_VELOCITY
    assert found.weight == pytest.approx(0.5 + 0.5 * 5 / limit)
    steady = [1_000.0 + 4.0 * k for k in range(100)]  # one per 4 s: 15 a minute
    assert velocity(steady, steady[-1]) is None
    assert answers_in_window(burst, burst[-1] + 3_600, 60) == 0


def test_shared_device_fires_above_the_account_limit() -> None:
    limit = DEFAULT_FRAUD_CONFIG.device_max_accounts
    assert shared_device(limit) is None
    found = shared_device(2 * limit)
    assert found is not None
    assert found.weight == 1.0


# --- combination -----------------------------------------------------------------------


def test_noisy_or_combination() -> None:
    rapid = FraudEvidence(FraudSignalKind.RAPID_RESPONSE, 0.6, "")
    velocity_hit = FraudEvidence(FraudSignalKind.IMPOSSIBLE_VELOCITY, 0.5, "")
    assert combine([]) == 0.0
    assert combine([rapid]) == pytest.approx(0.6)
    assert combine([rapid, velocity_hit]) == pytest.approx(1 - 0.4 * 0.5)


def test_config_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="rapid_ratio"):
        FraudConfig(rapid_ratio=0.0)
    with pytest.raises(ValueError, match="misfit_min_answers"):
        FraudConfig(misfit_window=5, misfit_min_answers=10)
