"""Batch fitting of BKT parameters per skill by EM (Baum-Welch) with random restarts.

Forward filtering (:mod:`scheduler.bkt.forward`), backward smoothing and a
closed-form M-step, for every skill and every random restart at once, vectorised
over the time-major packed layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from scheduler.bkt.arrays import BoolArray, FloatArray, IntArray, sum_by
from scheduler.bkt.forward import Packed, UnitParams, forward_filter, pack_rows
from scheduler.bkt.model import DEFAULT_PARAMS, PARAM_NAMES, BKTParamArrays, BKTParams
from scheduler.bkt.sequences import Sequences


@dataclass(frozen=True, slots=True)
class _Counts:
    """Log-likelihood and M-step values per unit from one E-step."""

    log_likelihood: FloatArray
    prior: FloatArray
    learn: FloatArray
    guess: FloatArray
    slip: FloatArray
    forget: FloatArray


# Below this a predicted state probability has underflowed; its smoothed mass is 0 too.
_TINY = 1e-300


def _e_step(packed: Packed, unit: UnitParams, forgets: bool) -> _Counts:
    filtered = forward_filter(packed, unit)
    learn = unit.learn[packed.row_unit]
    forget = unit.forget[packed.row_unit]
    stay_unknown = 1.0 - learn
    stay_known = 1.0 - forget
    # Backward smoothing in the discrete Rauch-Tung-Striebel form: probabilities
    # only, so nothing under- or overflows on long sequences.
    unknown = filtered.after_unknown.copy()  # right for the last answer of every row
    known = filtered.after_known.copy()
    learned = np.zeros(len(known))  # E[not mastered at t, mastered at t+1]
    forgot = np.zeros(len(known))  # E[mastered at t, not mastered at t+1]
    sizes, offsets = packed.batch_sizes, packed.offsets
    for step in range(len(sizes) - 2, -1, -1):
        size = sizes[step + 1]  # rows that go on to the next step
        now = slice(offsets[step], offsets[step] + size)
        nxt = slice(offsets[step + 1], offsets[step + 1] + size)
        known_ratio = known[nxt] / np.maximum(filtered.before_known[nxt], _TINY)
        unknown_ratio = unknown[nxt] / np.maximum(filtered.before_unknown[nxt], _TINY)
        post_unknown = filtered.after_unknown[now]
        post_known = filtered.after_known[now]
        # Expected transitions out of each state at t; a state's smoothed mass is their sum.
        to_known = post_unknown * learn[:size] * known_ratio
        learned[now] = to_known
        unknown[now] = post_unknown * stay_unknown[:size] * unknown_ratio + to_known
        if forgets:
            to_unknown = post_known * forget[:size] * unknown_ratio
            forgot[now] = to_unknown
            known[now] = post_known * stay_known[:size] * known_ratio + to_unknown
        else:
            known[now] = post_known * known_ratio
    n_units = len(unit.prior)

    def per_unit(weights: FloatArray) -> FloatArray:
        return sum_by(packed.unit, weights, n_units)

    first = slice(0, sizes[0] if sizes else 0)
    not_last = ~packed.last
    unknown_mass = per_unit(unknown)
    known_mass = per_unit(known)
    rows = np.bincount(packed.row_unit, minlength=n_units).astype(np.float64)
    return _Counts(
        log_likelihood=per_unit(np.log(filtered.evidence)),
        prior=_ratio(
            sum_by(packed.row_unit, known[first], n_units),
            rows,
            unit.prior,
        ),
        learn=_ratio(per_unit(learned), per_unit(np.where(not_last, unknown, 0.0)), unit.learn),
        guess=_ratio(per_unit(np.where(packed.correct, unknown, 0.0)), unknown_mass, unit.guess),
        slip=_ratio(per_unit(np.where(packed.correct, 0.0, known)), known_mass, unit.slip),
        forget=_ratio(per_unit(forgot), per_unit(np.where(not_last, known, 0.0)), unit.forget)
        if forgets
        else unit.forget,
    )


def _ratio(numerator: FloatArray, denominator: FloatArray, fallback: FloatArray) -> FloatArray:
    # A unit with (almost) no expected mass for a parameter keeps its current value.
    enough = denominator > 1e-12
    safe = np.where(enough, denominator, 1.0)
    return np.where(enough, numerator / safe, fallback)


@dataclass(frozen=True, slots=True)
class BKTBounds:
    """Closed [low, high] box for each fitted parameter (probabilities in [0, 1]).

    The default keeps guess and slip below 0.5, so a correct answer never lowers
    p_mastery (no degenerate fits, cf. pyBKT issues #21 and #36), and keeps every
    parameter a little away from 0 and 1 so no likelihood term is exactly zero.
    The EM M-step for each parameter is a one-dimensional concave problem, so
    clipping its closed-form value to the box is the exact constrained maximum
    and the likelihood still never decreases.
    """

    prior: tuple[float, float] = (1e-4, 1.0 - 1e-4)
    learn: tuple[float, float] = (1e-4, 1.0 - 1e-4)
    guess: tuple[float, float] = (1e-4, 0.49)
    slip: tuple[float, float] = (1e-4, 0.49)
    forget: tuple[float, float] = (1e-4, 1.0 - 1e-4)

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"bounds for {name} must satisfy 0 <= low <= high <= 1")

    @classmethod
    def loose(cls) -> Self:
        """Nearly unconstrained (guess and slip up to 1), like pyBKT; fits may degenerate."""
        edge = (1e-6, 1.0 - 1e-6)
        return cls(prior=edge, learn=edge, guess=edge, slip=edge, forget=edge)


DEFAULT_BOUNDS = BKTBounds()

# Restart draws: uniform on [low, min(high, cap)]; pyBKT draws from the same ranges
# (prior up to 1, learn and guess up to 0.4, slip up to 0.3); forget starts small.
_INIT_CAP = {"prior": 1.0, "learn": 0.4, "guess": 0.4, "slip": 0.3, "forget": 0.2}


@dataclass(frozen=True, slots=True)
class SkillFit:
    """The best restart's result for one skill."""

    params: BKTParams
    log_likelihood: float  # nats, summed over the skill's answers; 0.0 when it has none
    iterations: int  # E-steps run by the winning restart
    converged: bool  # log-likelihood change fell to the tolerance before max_iter
    n_answers: int


@dataclass(frozen=True, slots=True)
class BKTFit:
    """Fitted parameters for every skill id in ``[0, n_skills)``.

    Skills without answers get ``fallback`` parameters, ``n_answers == 0``.
    """

    skills: tuple[SkillFit, ...]
    restarts: int
    forgets: bool
    bounds: BKTBounds

    @property
    def log_likelihood(self) -> float:
        """Total log-likelihood in nats over all answers."""
        return float(sum(s.log_likelihood for s in self.skills))

    def param_arrays(self) -> BKTParamArrays:
        """The fitted parameters as arrays indexed by skill id."""
        return BKTParamArrays.from_params([s.params for s in self.skills])


def _draw_units(
    n_units: int, bounds: BKTBounds, forgets: bool, rng: np.random.Generator
) -> dict[str, FloatArray]:
    drawn: dict[str, FloatArray] = {}
    for name in PARAM_NAMES:
        low, high = getattr(bounds, name)
        if name == "forget" and not forgets:
            drawn[name] = np.zeros(n_units)
            continue
        drawn[name] = rng.uniform(low, max(low, min(high, _INIT_CAP[name])), size=n_units)
    return drawn


def fit_em(
    sequences: Sequences,
    rng: np.random.Generator,
    *,
    restarts: int = 5,
    forgets: bool = False,
    bounds: BKTBounds = DEFAULT_BOUNDS,
    tol: float = 0.005,
    max_iter: int = 100,
    fallback: BKTParams = DEFAULT_PARAMS,
) -> BKTFit:
    """Fit BKT parameters per skill by EM (Baum-Welch) with random restarts.

    All skills and all ``restarts`` run together in one vectorised E-step per
    iteration. A (skill, restart) stops when its log-likelihood (nats) changes by
    at most ``tol`` between iterations (pyBKT's rule and default) or after
    ``max_iter`` E-steps; the restart with the highest log-likelihood wins.
    ``forgets=False`` fixes forget at 0. Parameters always lie inside ``bounds``.
    """
    if restarts < 1 or max_iter < 1:
        raise ValueError("restarts and max_iter must be at least 1")
    n_skills = sequences.n_skills
    n_units = restarts * n_skills  # unit u = restart * n_skills + skill
    params = _draw_units(n_units, bounds, forgets, rng)
    low = {name: getattr(bounds, name)[0] for name in PARAM_NAMES}
    high = {name: getattr(bounds, name)[1] for name in PARAM_NAMES}

    answers_per_skill = np.bincount(sequences.skill, minlength=n_skills)
    active = np.tile(answers_per_skill > 0, restarts)
    iterations = np.zeros(n_units, dtype=np.int64)
    log_likelihood = np.full(n_units, -np.inf)
    all_rows = np.arange(sequences.n_sequences * restarts, dtype=np.int64)
    row_sequence = all_rows % sequences.n_sequences
    row_unit = (all_rows // sequences.n_sequences) * n_skills + sequences.sequence_skill[
        row_sequence
    ]
    packed = pack_rows(sequences, row_sequence, row_unit)
    packed_answers = len(packed.unit)

    for iteration in range(max_iter):
        if not active.any():
            break
        counts = _e_step(packed, UnitParams(**params), forgets)
        iterations[active] += 1
        change = np.abs(counts.log_likelihood - log_likelihood)
        log_likelihood = np.where(active, counts.log_likelihood, log_likelihood)
        active &= change > tol
        if iteration == max_iter - 1:
            break  # keep the parameters whose log-likelihood was just measured
        for name in PARAM_NAMES:
            if name == "forget" and not forgets:
                continue
            updated = np.clip(getattr(counts, name), low[name], high[name])
            params[name] = np.where(active, updated, params[name])
        # Once most answers belong to finished units, repack only the running rows.
        running = active[row_unit]
        running_answers = int(sequences.sequence_length[row_sequence[running]].sum())
        if 0 < running_answers < 0.5 * packed_answers:
            row_sequence, row_unit = row_sequence[running], row_unit[running]
            packed = pack_rows(sequences, row_sequence, row_unit)
            packed_answers = len(packed.unit)

    skills = _best_restarts(
        params, log_likelihood, iterations, ~active, answers_per_skill, fallback
    )
    return BKTFit(skills=skills, restarts=restarts, forgets=forgets, bounds=bounds)


def _best_restarts(
    params: dict[str, FloatArray],
    log_likelihood: FloatArray,
    iterations: IntArray,
    converged: BoolArray,
    answers_per_skill: IntArray,
    fallback: BKTParams,
) -> tuple[SkillFit, ...]:
    """Each skill's highest-likelihood restart (arrays per unit ``restart * n_skills + skill``)."""
    n_skills = len(answers_per_skill)
    best = np.argmax(log_likelihood.reshape(-1, n_skills), axis=0)
    skills = []
    for skill in range(n_skills):
        if answers_per_skill[skill] == 0:
            skills.append(SkillFit(fallback, 0.0, 0, False, 0))
            continue
        u = int(best[skill]) * n_skills + skill
        skills.append(
            SkillFit(
                params=BKTParams(*(float(params[name][u]) for name in PARAM_NAMES)),
                log_likelihood=float(log_likelihood[u]),
                iterations=int(iterations[u]),
                converged=bool(converged[u]),
                n_answers=int(answers_per_skill[skill]),
            )
        )
    return tuple(skills)
