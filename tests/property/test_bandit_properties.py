"""Bandit beliefs stay valid Beta parameters and probabilities stay in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.bandit import (
    BanditState,
    SessionStrategy,
    choose_strategy,
    gain_to_success,
    record_reward,
)

updates = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(list(SessionStrategy)),
        st.floats(-5, 5, allow_nan=False),
    ),
    max_size=50,
)


@given(updates, st.integers(0, 2**32 - 1))
def test_beliefs_stay_valid_and_choice_is_an_arm(
    history: list[tuple[str, SessionStrategy, float]], seed: int
) -> None:
    state = BanditState()
    for bucket, arm, gain in history:
        assert 0.0 <= gain_to_success(gain) <= 1.0
        before = sum(state.belief(bucket, arm))
        state = record_reward(state, bucket, arm, gain)
        assert sum(state.belief(bucket, arm)) == pytest.approx(before + 1.0)  # one unit each
    for bucket in ("a", "b"):
        for arm in SessionStrategy:
            alpha, beta = state.belief(bucket, arm)
            assert alpha > 0
            assert beta > 0
            assert 0.0 < state.mean_reward(bucket, arm) < 1.0
        choice = choose_strategy(state, bucket, np.random.default_rng(seed))
        assert choice in SessionStrategy
    assert BanditState.from_dict(state.to_dict()).to_dict() == state.to_dict()
