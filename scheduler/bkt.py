"""Bayesian Knowledge Tracing: the per-event update.

A skill is either mastered or not. Before an answer the probability of a correct
response is ``p_mastery * (1 - slip) + (1 - p_mastery) * guess``; after it, Bayes'
rule gives the posterior, then the learner may learn (``learn``) or forget
(``forget``) before the next opportunity (Corbett & Anderson, 1995).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BKTParams:
    """One skill's BKT parameters; every field is a probability in [0, 1]."""

    prior: float = 0.2  # P(L0): mastered before the first opportunity
    learn: float = 0.15  # P(T): not mastered -> mastered between opportunities
    guess: float = 0.2  # P(G): correct while not mastered
    slip: float = 0.1  # P(S): wrong while mastered
    forget: float = 0.0  # P(F): mastered -> not mastered between opportunities

    def __post_init__(self) -> None:
        for name in ("prior", "learn", "guess", "slip", "forget"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BKT {name} must be in [0, 1], got {value}")


DEFAULT_PARAMS = BKTParams()


def predict_correct(p_mastery: float, params: BKTParams) -> float:
    """Probability in [0, 1] that the next answer is correct, given P(mastered)."""
    return p_mastery * (1.0 - params.slip) + (1.0 - p_mastery) * params.guess


def update(p_mastery: float, score: float, params: BKTParams) -> float:
    """P(mastered) after one answer with ``score`` in [0, 1] (1 correct, 0 wrong).

    A partial score mixes the correct and wrong posteriors in proportion to the
    score. Constant time; the result is in [0, 1].
    """
    p_correct = predict_correct(p_mastery, params)
    known_if_right = p_mastery * (1.0 - params.slip) / p_correct if p_correct > 0 else p_mastery
    p_wrong = 1.0 - p_correct
    known_if_wrong = p_mastery * params.slip / p_wrong if p_wrong > 0 else p_mastery
    posterior = score * known_if_right + (1.0 - score) * known_if_wrong
    return posterior * (1.0 - params.forget) + (1.0 - posterior) * params.learn
