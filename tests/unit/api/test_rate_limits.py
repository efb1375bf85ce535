"""The fixed window: which window a moment falls in and how long until the next one."""

from __future__ import annotations

import pytest

from api.services.rate_limits import WINDOW_S, window_of


@pytest.mark.parametrize(
    ("now_s", "expected"),
    [(120.0, (2, 60)), (150.5, (2, 30)), (179.2, (2, 1)), (179.99, (2, 1)), (0.0, (0, 60))],
)
def test_window_and_retry_after(now_s: float, expected: tuple[int, int]) -> None:
    assert window_of(now_s) == expected


def test_retry_after_never_below_one_second_or_above_a_window() -> None:
    for tenth in range(0, 1200):
        _, retry_after = window_of(tenth / 10)
        assert 1 <= retry_after <= WINDOW_S
