"""BKT parameters and the per-event update, on floats and on arrays of learners.

A skill is either mastered or not. Before an answer the probability of a correct
response is ``p_mastery * (1 - slip) + (1 - p_mastery) * guess``; after it, Bayes'
rule gives the posterior, then the learner may learn (``learn``) or forget
(``forget``) before the next opportunity (Corbett & Anderson, 1995).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from scheduler.bkt.arrays import BoolArray, FloatArray, IntArray, frozen_floats

PARAM_NAMES = ("prior", "learn", "guess", "slip", "forget")


@dataclass(frozen=True, slots=True)
class BKTParams:
    """One skill's BKT parameters; every field is a probability in [0, 1]."""

    prior: float = 0.2  # P(L0): mastered before the first opportunity
    learn: float = 0.15  # P(T): not mastered -> mastered between opportunities
    guess: float = 0.2  # P(G): correct while not mastered
    slip: float = 0.1  # P(S): wrong while mastered
    forget: float = 0.0  # P(F): mastered -> not mastered between opportunities

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BKT {name} must be in [0, 1], got {value}")


DEFAULT_PARAMS = BKTParams()


def is_degenerate(params: BKTParams) -> bool:
    """True when guess >= 0.5 or slip >= 0.5.

    Such fits (Baker, Corbett & Aleven 2008; pyBKT issues #21, #36) make a wrong
    answer more likely for a master than a guess is right for a novice, or let a
    correct answer lower p_mastery when guess + slip > 1.
    """
    return params.guess >= 0.5 or params.slip >= 0.5


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
    p_next = posterior * (1.0 - params.forget) + (1.0 - posterior) * params.learn
    # Rounding can land one ulp outside [0, 1]; stored states must stay probabilities.
    # (Comparisons, not min/max calls: this runs once per event.)
    return 1.0 if p_next > 1.0 else (0.0 if p_next < 0.0 else p_next)


@dataclass(frozen=True, slots=True, eq=False)
class BKTParamArrays:
    """Parameters of many skills as arrays indexed by skill id (each in [0, 1])."""

    prior: FloatArray
    learn: FloatArray
    guess: FloatArray
    slip: FloatArray
    forget: FloatArray

    @classmethod
    def from_params(cls, params: tuple[BKTParams, ...] | list[BKTParams]) -> Self:
        """Arrays whose entry ``i`` is ``params[i]``."""
        columns = {name: frozen_floats([getattr(p, name) for p in params]) for name in PARAM_NAMES}
        return cls(**columns)

    @property
    def n_skills(self) -> int:
        """Number of skills (length of every array)."""
        return len(self.prior)

    def params(self, skill: int) -> BKTParams:
        """One skill's parameters as a :class:`BKTParams`."""
        return BKTParams(*(float(getattr(self, name)[skill]) for name in PARAM_NAMES))


def predict_correct_many(
    p_mastery: FloatArray, skill: IntArray, params: BKTParamArrays
) -> FloatArray:
    """P(correct) in [0, 1] for many learners at once; ``skill[i]`` indexes ``params``."""
    guess = params.guess[skill]
    return p_mastery * (1.0 - params.slip[skill]) + (1.0 - p_mastery) * guess


def update_many(
    p_mastery: FloatArray, score: FloatArray, skill: IntArray, params: BKTParamArrays
) -> FloatArray:
    """:func:`update` for many learners at once (element-wise, same rules, results in [0, 1])."""
    guess = params.guess[skill]
    slip = params.slip[skill]
    known_right = p_mastery * (1.0 - slip)
    known_wrong = p_mastery * slip
    p_correct = known_right + (1.0 - p_mastery) * guess
    p_wrong = 1.0 - p_correct
    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero evidence probability only happens with guess/slip at 0 or 1; keep the prior then.
        if_right = np.where(p_correct > 0, known_right / p_correct, p_mastery)
        if_wrong = np.where(p_wrong > 0, known_wrong / p_wrong, p_mastery)
    posterior = score * if_right + (1.0 - score) * if_wrong
    p_next = posterior * (1.0 - params.forget[skill]) + (1.0 - posterior) * params.learn[skill]
    return np.clip(p_next, 0.0, 1.0)


def simulate_answers(
    params: BKTParams, n_learners: int, n_steps: int, rng: np.random.Generator
) -> BoolArray:
    """Answers (True = correct) of learners who follow BKT; shape (n_learners, n_steps)."""
    known = rng.random(n_learners) < params.prior
    answers = np.empty((n_learners, n_steps), dtype=np.bool_)
    for step in range(n_steps):
        draw = rng.random(n_learners)
        answers[:, step] = np.where(known, draw >= params.slip, draw < params.guess)
        move = rng.random(n_learners)
        known = np.where(known, move >= params.forget, move < params.learn)
    return answers
