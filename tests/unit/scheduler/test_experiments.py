"""Experiments: deterministic assignment, and the mSPRT's error rates under peeking.

The error-rate tests simulate many experiments at once (numpy, fixed seed), look after
every batch of learners, and stop an experiment at the first look whose always-valid
p-value is ≤ α. The observed rates are judged by a one-sided 99 % Clopper-Pearson
bound, not by an exact threshold: the false-positive rate's upper bound must be ≤ α,
the detection rate's lower bound must reach the power docs/experiments.md states.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from scheduler.experiments import (
    ArmCounts,
    ExperimentError,
    Variant,
    Verdict,
    always_valid_interval,
    always_valid_p,
    analyse,
    assign_variant,
    assignment_point,
    msprt_log_lr,
)

ALPHA = 0.05
SIMULATIONS = 2000
BATCHES = 40  # looks per experiment
BATCH = 50  # learners per arm and batch: at most 2000 per arm


def detection_rate(p_a: float, p_b: float, *, seed: int, batch: int = BATCH) -> tuple[int, int]:
    """(experiments stopped with p ≤ α at some look, experiments simulated)."""
    rng = np.random.default_rng(seed)
    x_a = np.cumsum(rng.binomial(batch, p_a, size=(SIMULATIONS, BATCHES)), axis=1)
    x_b = np.cumsum(rng.binomial(batch, p_b, size=(SIMULATIONS, BATCHES)), axis=1)
    n = batch * np.arange(1, BATCHES + 1)[None, :]
    # p after each look is the running minimum of 1/Λ; it is ≤ α at some look iff
    # Λ reached 1/α at some look.
    rejected = (msprt_log_lr(n, x_a, n, x_b) >= math.log(1 / ALPHA)).any(axis=1)
    return int(rejected.sum()), SIMULATIONS


def upper_bound(successes: int, trials: int, confidence: float = 0.99) -> float:
    return float(stats.beta.ppf(confidence, successes + 1, trials - successes))


def lower_bound(successes: int, trials: int, confidence: float = 0.99) -> float:
    if successes == 0:
        return 0.0
    return float(stats.beta.ppf(1 - confidence, successes, trials - successes + 1))


@pytest.mark.parametrize(
    ("rate", "batch"), [(0.30, BATCH), (0.10, BATCH), (0.50, BATCH), (0.05, 10)]
)
def test_false_positive_rate_under_no_effect_holds_with_peeking(rate: float, batch: int) -> None:
    rejected, trials = detection_rate(rate, rate, seed=11, batch=batch)
    assert upper_bound(rejected, trials) <= ALPHA, f"{rejected}/{trials} false positives"


@pytest.mark.parametrize(("p_b", "power"), [(0.36, 0.85), (0.38, 0.97)])
def test_known_effect_is_found_at_the_stated_power(p_b: float, power: float) -> None:
    detected, trials = detection_rate(0.30, p_b, seed=12)
    assert lower_bound(detected, trials) >= power, f"{detected}/{trials} detected"


def test_p_value_never_rises_again() -> None:
    first = float(always_valid_p(1000, 300, 1000, 380))
    later = float(always_valid_p(2000, 640, 2000, 650, previous=first))
    assert first < 0.01
    assert later == first


def test_no_evidence_without_variance_or_learners() -> None:
    assert float(always_valid_p(0, 0, 10, 5)) == 1.0
    assert float(always_valid_p(10, 0, 10, 0)) == 1.0
    assert always_valid_interval(ArmCounts("a", 0, 0), ArmCounts("b", 5, 1), ALPHA) == (-1, 1)


def test_interval_covers_the_estimate_and_excludes_zero_once_significant() -> None:
    a, b = ArmCounts("a", 2000, 600), ArmCounts("b", 2000, 760)
    low, high = always_valid_interval(a, b, ALPHA)
    assert low < 0.08 < high
    assert low > 0  # p ≤ α here, and the interval is the set of θ not rejected
    assert float(always_valid_p(2000, 600, 2000, 760)) <= ALPHA


def test_analyse_verdicts() -> None:
    arms = [
        ArmCounts("control", 2000, 600),
        ArmCounts("up", 2000, 760),
        ArmCounts("same", 2000, 605),
    ]
    results = analyse(arms, minimum_sample=500)
    assert [r.verdict for r in results] == [Verdict.CONTROL, Verdict.BETTER, Verdict.INCONCLUSIVE]
    assert results[1].lift == pytest.approx(0.08)
    assert results[1].p_best > 0.99
    assert results[1].expected_loss < results[0].expected_loss
    assert sum(r.p_best for r in results) == pytest.approx(1.0)
    held = analyse(arms, minimum_sample=5000)
    assert held[1].verdict is Verdict.TOO_FEW
    worse = analyse([ArmCounts("c", 2000, 760), ArmCounts("t", 2000, 600)], minimum_sample=0)
    assert worse[1].verdict is Verdict.WORSE


def test_analyse_refuses_impossible_counts() -> None:
    with pytest.raises(ExperimentError, match="converted"):
        analyse([ArmCounts("a", 3, 4), ArmCounts("b", 3, 1)], minimum_sample=0)


VARIANTS = (Variant("control", 1.0, "bandit"), Variant("review", 3.0, "review"))


def test_assignment_is_deterministic_and_follows_the_weights() -> None:
    learners = [f"learner-{k}" for k in range(20_000)]
    first = [assign_variant("exp-1", "t1", u, VARIANTS).name for u in learners]
    again = [assign_variant("exp-1", "t1", u, VARIANTS).name for u in learners]
    assert first == again
    share = first.count("review") / len(first)
    # Binomial(20000, 0.75): SD 0.003; 5 SD either side.
    assert abs(share - 0.75) < 0.016


def test_experiments_split_learners_independently() -> None:
    learners = [f"learner-{k}" for k in range(20_000)]
    halves = (Variant("a", 1.0, "x"), Variant("b", 1.0, "y"))
    one = np.array([assign_variant("exp-1", "t1", u, halves).name == "a" for u in learners])
    two = np.array([assign_variant("exp-2", "t1", u, halves).name == "a" for u in learners])
    both = float((one & two).mean())
    assert abs(both - 0.25) < 0.016  # independent halves overlap on a quarter
    points = [assignment_point("exp-1", "t1", u) for u in learners[:100]]
    assert all(0.0 <= p < 1.0 for p in points)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ((Variant("a", 1.0, "x"),), "at least two"),
        ((Variant("a", 1.0, "x"), Variant("a", 1.0, "y")), "unique"),
        ((Variant("a", 1.0, "x"), Variant("b", 0.0, "y")), "weight"),
        ((Variant("a", 1.0, "x"), Variant("b", math.nan, "y")), "weight"),
    ],
)
def test_bad_variants_are_refused(variants: tuple[Variant, ...], message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        assign_variant("exp", "t", "u", variants)
