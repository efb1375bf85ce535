"""Thompson-sampling strategy bandit: updates, serialisation, convergence in simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.bandit import (
    PRIOR,
    BanditState,
    SessionStrategy,
    choose_strategy,
    context_bucket,
    gain_to_success,
    record_reward,
)

PRACTICE, REVIEW, MOCK = SessionStrategy.PRACTICE, SessionStrategy.REVIEW, SessionStrategy.MOCK_TEST


@pytest.mark.parametrize(("gain", "success"), [(-1.0, 0.0), (0.0, 0.5), (1.0, 1.0), (3.0, 1.0)])
def test_gain_maps_linearly_to_a_success_fraction(gain: float, success: float) -> None:
    assert gain_to_success(gain) == success


def test_fractional_update_and_immutability() -> None:
    empty = BanditState()
    after = record_reward(empty, "b", REVIEW, 0.5)
    assert after.belief("b", REVIEW) == (PRIOR[0] + 0.75, PRIOR[1] + 0.25)
    assert after.belief("b", PRACTICE) == PRIOR
    assert after.belief("other", REVIEW) == PRIOR
    assert empty.belief("b", REVIEW) == PRIOR


def test_state_round_trips_through_json() -> None:
    state = BanditState()
    for gain, arm in [(0.2, PRACTICE), (-0.4, MOCK), (0.9, PRACTICE)]:
        state = record_reward(state, "mid:some:nogoal", arm, gain)
    restored = BanditState.from_dict(json.loads(json.dumps(state.to_dict())))
    for arm in SessionStrategy:
        assert restored.belief("mid:some:nogoal", arm) == state.belief("mid:some:nogoal", arm)
    with pytest.raises(ValueError, match="positive"):
        BanditState.from_dict({"b": {"review": [0.0, 1.0]}})


def test_choice_is_reproducible_with_the_same_seed() -> None:
    state = record_reward(BanditState(), "b", MOCK, 0.3)
    first = [choose_strategy(state, "b", np.random.default_rng(5)) for _ in range(3)]
    second = [choose_strategy(state, "b", np.random.default_rng(5)) for _ in range(3)]
    assert first == second


def simulate(
    mean_gain: dict[str, dict[SessionStrategy, float]], rounds: int, seed: int
) -> dict[str, list[SessionStrategy]]:
    """Learners arrive in random buckets; each session's gain is noisy around the arm's mean."""
    rng = np.random.default_rng(seed)
    state = BanditState()
    chosen: dict[str, list[SessionStrategy]] = {bucket: [] for bucket in mean_gain}
    buckets = sorted(mean_gain)
    for _ in range(rounds):
        bucket = buckets[int(rng.integers(len(buckets)))]
        arm = choose_strategy(state, bucket, rng)
        gain = float(np.clip(rng.normal(mean_gain[bucket][arm], 0.3), -1.0, 1.0))
        state = record_reward(state, bucket, arm, gain)
        chosen[bucket].append(arm)
    return chosen


def test_converges_to_the_better_strategy() -> None:
    means = {"only": {PRACTICE: 0.30, REVIEW: 0.05, MOCK: -0.10}}
    chosen = simulate(means, rounds=2_000, seed=11)["only"]
    last = chosen[-500:]
    assert last.count(PRACTICE) / len(last) >= 0.9


def test_learns_a_different_best_strategy_per_context() -> None:
    means = {
        "exam_soon": {PRACTICE: 0.0, REVIEW: 0.1, MOCK: 0.4},
        "backlog": {PRACTICE: 0.05, REVIEW: 0.35, MOCK: -0.2},
    }
    chosen = simulate(means, rounds=4_000, seed=3)
    for bucket, best in (("exam_soon", MOCK), ("backlog", REVIEW)):
        last = chosen[bucket][-400:]
        assert last.count(best) / len(last) >= 0.85, bucket


def test_context_bucket_bands() -> None:
    assert context_bucket(-1.0, 0) == "low:none:nogoal"
    assert context_bucket(0.0, 3, 30) == "mid:some:later"
    assert context_bucket(1.2, 25, 7) == "high:many:soon"
