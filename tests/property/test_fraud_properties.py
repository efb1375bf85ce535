"""Fraud scores stay in [0, 1], combine monotonically, and the rolling stores behave."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from scheduler.fraud import (
    HISTOGRAM_BINS,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    add_response_time,
    combine,
    difficulty_proxy,
    empty_histogram,
    histogram_quantile,
    rapid_response,
)

weights = st.floats(0.0, 1.0)
evidence = st.builds(FraudEvidence, st.sampled_from(list(FraudSignalKind)), weights, st.just(""))
times_ms = st.floats(1.0, 1e7)


@given(st.lists(evidence, max_size=6), evidence)
def test_combined_score_is_in_unit_interval_and_grows_with_evidence(
    found: list[FraudEvidence], more: FraudEvidence
) -> None:
    score = combine(found)
    assert 0.0 <= score <= 1.0
    assert combine([*found, more]) >= score - 1e-12
    assert combine(found[::-1]) == score or math.isclose(combine(found[::-1]), score)
    assert combine([*found, more]) >= max((e.weight for e in [*found, more]), default=0) - 1e-12


@given(st.lists(times_ms, min_size=1, max_size=80), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_histogram_quantiles_are_ordered_and_within_the_bin_range(
    samples: list[float], q1: float, q2: float
) -> None:
    counts = empty_histogram()
    for ms in samples:
        counts = add_response_time(counts, ms, cap=1e9)
    assert len(counts) == HISTOGRAM_BINS
    assert sum(counts) == len(samples)
    low, high = sorted((q1, q2))
    assert histogram_quantile(counts, low) <= histogram_quantile(counts, high)
    assert 100.0 <= histogram_quantile(counts, low) <= 3_600_000.0 + 1e-6


@given(st.lists(times_ms, min_size=2, max_size=40))
def test_histogram_does_not_depend_on_arrival_order_below_the_cap(samples: list[float]) -> None:
    forward, backward = empty_histogram(), empty_histogram()
    for ms in samples:
        forward = add_response_time(forward, ms, cap=1e9)
    for ms in reversed(samples):
        backward = add_response_time(backward, ms, cap=1e9)
    assert forward == backward


@given(st.integers(1, 1000), st.integers(0, 1000), st.integers(0, 1000))
def test_a_harder_item_gets_a_higher_proxy_difficulty(answers: int, c1: int, c2: int) -> None:
    low, high = sorted((min(c1, answers), min(c2, answers)))
    easier = ResponseReference(empty_histogram(), answers, high)
    harder = ResponseReference(empty_histogram(), answers, low)
    assert difficulty_proxy(harder, None) >= difficulty_proxy(easier, None)


@given(st.lists(times_ms, min_size=20, max_size=60), st.integers(1, 100_000), st.booleans())
def test_rapid_weight_is_bounded_and_faster_is_never_less_suspicious(
    samples: list[float], response_ms: int, correct: bool
) -> None:
    counts = empty_histogram()
    for ms in samples:
        counts = add_response_time(counts, ms, cap=1e9)
    item = ResponseReference(counts, len(samples), len(samples) // 2)
    found = rapid_response(response_time_ms=response_ms, correct=correct, item=item, skill=None)
    faster = rapid_response(
        response_time_ms=max(response_ms // 2, 1), correct=correct, item=item, skill=None
    )
    weight = 0.0 if found is None else found.weight
    faster_weight = 0.0 if faster is None else faster.weight
    assert 0.0 <= weight <= 1.0
    assert faster_weight >= weight
