"""The rule-style mastery labels: thresholds, edges, and the no-evidence case."""

from __future__ import annotations

import pytest

from api.services.mastery import (
    FAMILIAR_AT,
    MASTERED_AT,
    PROFICIENT_AT,
    MasteryLabel,
    mastery_label,
)


def test_thresholds_are_ordered_inside_the_unit_interval() -> None:
    assert 0 < FAMILIAR_AT < PROFICIENT_AT < MASTERED_AT <= 1


@pytest.mark.parametrize(
    ("p_mastery", "expected"),
    [
        (0.0, MasteryLabel.PRACTISING),
        (FAMILIAR_AT - 1e-9, MasteryLabel.PRACTISING),
        (FAMILIAR_AT, MasteryLabel.FAMILIAR),
        (PROFICIENT_AT - 1e-9, MasteryLabel.FAMILIAR),
        (PROFICIENT_AT, MasteryLabel.PROFICIENT),
        (MASTERED_AT - 1e-9, MasteryLabel.PROFICIENT),
        (MASTERED_AT, MasteryLabel.MASTERED),
        (1.0, MasteryLabel.MASTERED),
    ],
)
def test_label_changes_exactly_at_each_threshold(p_mastery: float, expected: MasteryLabel) -> None:
    assert mastery_label(p_mastery, attempts=3) is expected


@pytest.mark.parametrize("p_mastery", [0.0, 0.5, 0.99])
def test_no_attempts_means_not_started_whatever_the_prior(p_mastery: float) -> None:
    assert mastery_label(p_mastery, attempts=0) is MasteryLabel.NOT_STARTED


def test_labels_never_go_down_as_probability_rises() -> None:
    order = list(MasteryLabel)
    ranks = [order.index(mastery_label(i / 100, attempts=1)) for i in range(101)]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize(("p_mastery", "attempts"), [(-0.01, 1), (1.01, 1), (0.5, -1)])
def test_out_of_range_inputs_are_refused(p_mastery: float, attempts: int) -> None:
    with pytest.raises(ValueError, match="must"):
        mastery_label(p_mastery, attempts)
