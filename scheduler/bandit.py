"""Choosing the session strategy (practice, review, mock test) with Thompson sampling.

Each (context bucket, strategy) pair keeps a Beta(α, β) belief about the chance that a
session of that strategy produces learning. To choose, draw one sample from every
strategy's Beta in the learner's bucket and take the largest (Thompson sampling,
Thompson 1933; Agrawal & Goyal 2012). Exploration fades by itself as the beliefs
sharpen.

Reward. The reward is the session's learning gain in [-1, 1] (e.g. the change in mean
mastery of the practised skills, clipped). Beta–Bernoulli needs a success in [0, 1], so
the gain is mapped linearly, ``r = (gain + 1) / 2`` (no change = 0.5), and the update is
*fractional*: ``α += r``, ``β += 1 - r``. Agrawal & Goyal's alternative, a Bernoulli(r)
coin flip, has the same expected update but adds noise and needs a random draw; the
fractional update keeps ``record_reward`` deterministic, so a processor that replays
an event after a crash writes the same state.

State is an immutable mapping bucket -> strategy -> (α, β), JSON-ready through
:meth:`BanditState.to_dict`. Randomness is the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np


class SessionStrategy(StrEnum):
    """What kind of session to offer."""

    PRACTICE = "practice"
    REVIEW = "review"
    MOCK_TEST = "mock_test"


STRATEGIES = tuple(SessionStrategy)
PRIOR = (1.0, 1.0)  # uniform Beta(1, 1): no strategy preferred before any evidence


@dataclass(frozen=True, slots=True)
class BanditState:
    """Beta parameters per context bucket and strategy; α, β > 0.

    A bucket or strategy with no entry is at :data:`PRIOR`.
    """

    beliefs: Mapping[str, Mapping[SessionStrategy, tuple[float, float]]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def belief(self, bucket: str, strategy: SessionStrategy) -> tuple[float, float]:
        """(α, β) for ``strategy`` in ``bucket``."""
        return self.beliefs.get(bucket, {}).get(strategy, PRIOR)

    def mean_reward(self, bucket: str, strategy: SessionStrategy) -> float:
        """Posterior mean success probability α / (α + β), in (0, 1)."""
        alpha, beta = self.belief(bucket, strategy)
        return alpha / (alpha + beta)

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        """JSON-ready ``{bucket: {strategy: [alpha, beta]}}`` (for JSONB)."""
        return {
            bucket: {str(strategy): [a, b] for strategy, (a, b) in arms.items()}
            for bucket, arms in self.beliefs.items()
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Mapping[str, Any]]) -> BanditState:
        """Inverse of :meth:`to_dict`; rejects unknown strategies and non-positive α, β."""
        beliefs: dict[str, Mapping[SessionStrategy, tuple[float, float]]] = {}
        for bucket, arms in payload.items():
            parsed: dict[SessionStrategy, tuple[float, float]] = {}
            for name, pair in arms.items():
                alpha, beta = (float(v) for v in pair)
                if not (alpha > 0 and beta > 0 and math.isfinite(alpha + beta)):
                    raise ValueError(f"bandit belief {bucket}/{name} must be positive: {pair}")
                parsed[SessionStrategy(name)] = (alpha, beta)
            beliefs[str(bucket)] = MappingProxyType(parsed)
        return cls(MappingProxyType(beliefs))


def gain_to_success(gain: float) -> float:
    """Map a learning gain in [-1, 1] (clipped) to a success fraction in [0, 1]."""
    if not math.isfinite(gain):
        raise ValueError(f"learning gain must be finite, got {gain}")
    return (min(1.0, max(-1.0, gain)) + 1.0) / 2.0


def choose_strategy(
    state: BanditState,
    bucket: str,
    rng: np.random.Generator,
    strategies: tuple[SessionStrategy, ...] = STRATEGIES,
) -> SessionStrategy:
    """Thompson sampling: one Beta draw per strategy in ``bucket``, the largest wins.

    Only ``strategies`` are considered (e.g. leave out MOCK_TEST when no test exists);
    exact ties go to the earlier strategy.
    """
    if not strategies:
        raise ValueError("no strategy to choose from")
    alphas, betas = zip(*(state.belief(bucket, s) for s in strategies), strict=True)
    draws = rng.beta(np.asarray(alphas), np.asarray(betas))
    return strategies[int(np.argmax(draws))]


def record_reward(
    state: BanditState, bucket: str, strategy: SessionStrategy, gain: float
) -> BanditState:
    """The state after a ``strategy`` session in ``bucket`` produced learning ``gain``.

    Fractional Beta update with ``r = (gain + 1) / 2``: α += r, β += 1 − r.
    Returns a new state; the argument is unchanged.
    """
    success = gain_to_success(gain)
    alpha, beta = state.belief(bucket, strategy)
    arms = dict(state.beliefs.get(bucket, {}))
    arms[strategy] = (alpha + success, beta + 1.0 - success)
    beliefs = dict(state.beliefs)
    beliefs[bucket] = MappingProxyType(arms)
    return BanditState(MappingProxyType(beliefs))


def context_bucket(ability: float, due_reviews: int, days_to_goal: float | None = None) -> str:
    """A coarse context key: ability band, review backlog, time to the learner's goal.

    Ability (IRT θ) in three bands (< -0.5, -0.5..0.5, > 0.5); due reviews none / some
    (1-9) / many (≥ 10); goal within 14 days, later, or none. Few buckets keep each
    one's evidence dense enough to learn from.
    """
    ability_band = "low" if ability < -0.5 else ("high" if ability > 0.5 else "mid")
    backlog = "none" if due_reviews <= 0 else ("some" if due_reviews < 10 else "many")
    goal = "nogoal" if days_to_goal is None else ("soon" if days_to_goal <= 14 else "later")
    return f"{ability_band}:{backlog}:{goal}"
