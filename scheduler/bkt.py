"""Bayesian Knowledge Tracing: per-event update, vectorised prediction, EM fitting.

A skill is either mastered or not. Before an answer the probability of a correct
response is ``p_mastery * (1 - slip) + (1 - p_mastery) * guess``; after it, Bayes'
rule gives the posterior, then the learner may learn (``learn``) or forget
(``forget``) before the next opportunity (Corbett & Anderson, 1995).

Three layers, all pure (no I/O; randomness is a ``np.random.Generator`` argument):

* per event: :func:`predict_correct` and :func:`update` on floats (the stream
  processor calls these once per answer), and :func:`predict_correct_many` /
  :func:`update_many` on arrays of learners at once;
* over whole sequences: :func:`build_sequences` groups answers into one sequence
  per (skill, learner); :func:`predict_sequences` gives P(correct) before every
  answer (for AUC evaluation);
* batch fitting: :func:`fit_em` runs Baum-Welch (forward filtering, backward
  smoothing, closed-form M-step) for every skill and every random restart at
  once, vectorised over a time-major packed layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

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


# --------------------------------------------------------------------------- arrays


def _frozen_floats(values: ArrayLike) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def _frozen_ints(values: ArrayLike) -> IntArray:
    array = np.array(values, dtype=np.int64)
    array.setflags(write=False)
    return array


def _frozen_flags(values: ArrayLike) -> BoolArray:
    array = np.array(values, dtype=np.bool_)
    array.setflags(write=False)
    return array


def _sum_by(index: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Sum of ``weights`` per value of ``index`` in [0, size) (a typed np.bincount)."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


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
        columns = {name: _frozen_floats([getattr(p, name) for p in params]) for name in PARAM_NAMES}
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


# --------------------------------------------------------------------------- sequences


@dataclass(frozen=True, slots=True, eq=False)
class Sequences:
    """Answers grouped into one sequence per (skill, learner), order kept.

    Built by :func:`build_sequences`; ``N`` answers, ``M`` sequences. Arrays are read-only.
    """

    n_skills: int
    correct: BoolArray  # (N,) answer i was correct
    skill: IntArray  # (N,) skill id of answer i, in [0, n_skills)
    sequence: IntArray  # (N,) sequence index of answer i, in [0, M)
    step: IntArray  # (N,) 0-based position of answer i within its sequence
    sequence_skill: IntArray  # (M,) skill id of each sequence
    sequence_length: IntArray  # (M,) answers in each sequence
    answers_by_sequence: IntArray  # (N,) answer indices sorted by (sequence, step)
    sequence_start: IntArray  # (M,) where each sequence begins in answers_by_sequence

    @property
    def n_answers(self) -> int:
        """Number of answers N."""
        return len(self.correct)

    @property
    def n_sequences(self) -> int:
        """Number of (skill, learner) sequences M."""
        return len(self.sequence_length)


def build_sequences(
    skill: ArrayLike, learner: ArrayLike, correct: ArrayLike, n_skills: int | None = None
) -> Sequences:
    """Group answers by (skill, learner); answers must be in time order within a learner.

    ``skill``: non-negative int skill ids; ``learner``: any int ids; ``correct``: 0/1 or bool.
    ``n_skills`` defaults to ``max(skill) + 1``. Runs in O(N log N).
    """
    skill_ids = np.asarray(skill, dtype=np.int64)
    correct_flags = np.asarray(correct)
    if correct_flags.dtype != np.bool_:
        if correct_flags.size and not np.isin(correct_flags, (0, 1)).all():
            raise ValueError("correct must hold only 0 and 1")
        correct_flags = correct_flags.astype(np.bool_)
    _, learner_codes = np.unique(np.asarray(learner), return_inverse=True)
    if not (len(skill_ids) == len(learner_codes) == len(correct_flags)):
        raise ValueError("skill, learner and correct must have the same length")
    if skill_ids.size and skill_ids.min() < 0:
        raise ValueError("skill ids must be non-negative")
    skills = int(
        n_skills if n_skills is not None else (skill_ids.max() + 1 if skill_ids.size else 0)
    )
    if skill_ids.size and skill_ids.max() >= skills:
        raise ValueError(f"skill id {skill_ids.max()} out of range for n_skills={skills}")
    n_learners = int(learner_codes.max()) + 1 if learner_codes.size else 1
    key = skill_ids * n_learners + learner_codes.astype(np.int64)
    unique_keys, sequence = np.unique(key, return_inverse=True)
    sequence = sequence.astype(np.int64)
    by_sequence = np.argsort(sequence, kind="stable").astype(np.int64)
    length = np.bincount(sequence, minlength=len(unique_keys)).astype(np.int64)
    start = np.cumsum(length) - length
    step = np.empty(len(sequence), dtype=np.int64)
    step[by_sequence] = np.arange(len(sequence), dtype=np.int64) - np.repeat(start, length)
    return Sequences(
        n_skills=skills,
        correct=_frozen_flags(correct_flags),
        skill=_frozen_ints(skill_ids),
        sequence=_frozen_ints(sequence),
        step=_frozen_ints(step),
        sequence_skill=_frozen_ints(unique_keys // n_learners),
        sequence_length=_frozen_ints(length),
        answers_by_sequence=_frozen_ints(by_sequence),
        sequence_start=_frozen_ints(start),
    )


@dataclass(frozen=True, slots=True, eq=False)
class _Packed:
    """Time-major packed layout (as in PyTorch's PackedSequence) of some rows.

    A row is one sequence under one parameter set ("unit"). Rows are sorted by
    length, longest first, so the rows still running at step ``t`` are exactly
    the first ``batch_sizes[t]``; their answers at step ``t`` occupy
    ``offsets[t] : offsets[t] + batch_sizes[t]``. One Python iteration per step
    then handles every skill, learner and restart together.
    """

    batch_sizes: list[int]
    offsets: list[int]
    row_unit: IntArray  # (rows,) unit of each row, rows in packed (length-descending) order
    unit: IntArray  # (P,) unit at each packed position
    correct: BoolArray  # (P,)
    last: BoolArray  # (P,) last answer of its row
    answer: IntArray  # (P,) index of the answer in the Sequences


def _pack(sequences: Sequences, row_sequence: IntArray, row_unit: IntArray) -> _Packed:
    length = sequences.sequence_length[row_sequence]
    order = np.argsort(-length, kind="stable")
    row_sequence, row_unit, length = row_sequence[order], row_unit[order], length[order]
    n_rows = len(length)
    max_length = int(length[0]) if n_rows else 0
    ends = np.bincount(length, minlength=max_length + 1)
    batch_sizes = n_rows - np.cumsum(ends)[:-1]
    offsets = np.concatenate(([0], np.cumsum(batch_sizes))).astype(np.int64)
    total = int(offsets[-1])
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), length)
    step = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    answer = sequences.answers_by_sequence[sequences.sequence_start[row_sequence[row_of]] + step]
    position = offsets[step] + row_of
    packed_answer = np.empty(total, dtype=np.int64)
    packed_answer[position] = answer
    packed_unit = np.empty(total, dtype=np.int64)
    packed_unit[position] = row_unit[row_of]
    last = np.zeros(total, dtype=np.bool_)
    last[position[step == length[row_of] - 1]] = True
    return _Packed(
        batch_sizes=[int(b) for b in batch_sizes],
        offsets=[int(o) for o in offsets],
        row_unit=row_unit,
        unit=packed_unit,
        correct=sequences.correct[packed_answer],
        last=last,
        answer=packed_answer,
    )


@dataclass(frozen=True, slots=True)
class _Unit:
    """Parameters per unit (one skill under one restart), arrays of shape (units,)."""

    prior: FloatArray
    learn: FloatArray
    guess: FloatArray
    slip: FloatArray
    forget: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class _Filtered:
    """Forward pass over a packed layout; every array has one entry per packed position.

    Both state probabilities are kept (never ``1 - p``): after long runs of correct
    answers P(not mastered) is far below float64's resolution next to 1, and a
    single ``p`` would lose it, or round above 1 and then blow up on wrong answers.
    """

    before_unknown: FloatArray  # P(not mastered | earlier answers)
    before_known: FloatArray  # P(mastered | earlier answers)
    after_unknown: FloatArray  # P(not mastered | answers up to and including this one)
    after_known: FloatArray
    evidence: FloatArray  # P(this answer | earlier answers)


def _forward(packed: _Packed, unit: _Unit) -> _Filtered:
    guess = unit.guess[packed.unit]
    slip = unit.slip[packed.unit]
    like_known = np.where(packed.correct, 1.0 - slip, slip)
    like_unknown = np.where(packed.correct, guess, 1.0 - guess)
    learn = unit.learn[packed.row_unit]
    forget = unit.forget[packed.row_unit]
    stay_unknown = 1.0 - learn
    stay_known = 1.0 - forget
    total = packed.offsets[-1]
    out = _Filtered(*(np.empty(total) for _ in range(5)))
    unknown = 1.0 - unit.prior[packed.row_unit]
    known = unit.prior[packed.row_unit].copy()
    for start, size in zip(packed.offsets, packed.batch_sizes, strict=False):
        now = slice(start, start + size)
        joint_unknown = unknown[:size] * like_unknown[now]
        joint_known = known[:size] * like_known[now]
        marginal = joint_unknown + joint_known
        post_unknown = joint_unknown / marginal
        post_known = joint_known / marginal
        out.before_unknown[now] = unknown[:size]
        out.before_known[now] = known[:size]
        out.after_unknown[now] = post_unknown
        out.after_known[now] = post_known
        out.evidence[now] = marginal
        unknown = post_unknown * stay_unknown[:size] + post_known * forget[:size]
        known = post_unknown * learn[:size] + post_known * stay_known[:size]
    return out


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


def _e_step(packed: _Packed, unit: _Unit, forgets: bool) -> _Counts:
    filtered = _forward(packed, unit)
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
        return _sum_by(packed.unit, weights, n_units)

    first = slice(0, sizes[0] if sizes else 0)
    not_last = ~packed.last
    unknown_mass = per_unit(unknown)
    known_mass = per_unit(known)
    rows = np.bincount(packed.row_unit, minlength=n_units).astype(np.float64)
    return _Counts(
        log_likelihood=per_unit(np.log(filtered.evidence)),
        prior=_ratio(
            _sum_by(packed.row_unit, known[first], n_units),
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


# --------------------------------------------------------------------------- fitting


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
    packed = _pack(sequences, row_sequence, row_unit)
    packed_answers = len(packed.unit)

    for iteration in range(max_iter):
        if not active.any():
            break
        counts = _e_step(packed, _Unit(**params), forgets)
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
            packed = _pack(sequences, row_sequence, row_unit)
            packed_answers = len(packed.unit)

    converged = ~active
    best = np.argmax(log_likelihood.reshape(restarts, n_skills), axis=0)
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
    return BKTFit(skills=tuple(skills), restarts=restarts, forgets=forgets, bounds=bounds)


def _one_row_per_sequence(params: BKTParamArrays, sequences: Sequences) -> tuple[_Packed, _Unit]:
    if params.n_skills < sequences.n_skills:
        raise ValueError(f"params cover {params.n_skills} skills, data needs {sequences.n_skills}")
    unit = _Unit(**{name: getattr(params, name) for name in PARAM_NAMES})
    rows = np.arange(sequences.n_sequences, dtype=np.int64)
    return _pack(sequences, rows, sequences.sequence_skill), unit


def predict_sequences(params: BKTParamArrays, sequences: Sequences) -> FloatArray:
    """P(correct) in [0, 1] before each answer, in the order of the answers given.

    Each (skill, learner) sequence starts at the skill's prior and is filtered
    answer by answer, exactly as :func:`update` would do event by event.
    """
    packed, unit = _one_row_per_sequence(params, sequences)
    filtered = _forward(packed, unit)
    guess = params.guess[packed.unit]
    slip = params.slip[packed.unit]
    p_correct = np.empty(sequences.n_answers)
    p_correct[packed.answer] = (
        filtered.before_known * (1.0 - slip) + filtered.before_unknown * guess
    )
    return p_correct


def log_likelihood(params: BKTParamArrays, sequences: Sequences) -> FloatArray:
    """Log-likelihood in nats of each skill's answers under ``params``, shape (n_skills,)."""
    packed, unit = _one_row_per_sequence(params, sequences)
    evidence = _forward(packed, unit).evidence
    return _sum_by(packed.unit, np.log(evidence), params.n_skills)
