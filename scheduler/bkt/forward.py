"""Forward filtering of whole sequences: P(correct) before every answer, log-likelihood.

Sequences are run in a time-major packed layout (:class:`Packed`), one Python
iteration per step for every skill, learner and EM restart together. The same
filter is the E-step's first half in :mod:`scheduler.bkt.em`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.bkt.arrays import BoolArray, FloatArray, IntArray, sum_by
from scheduler.bkt.model import PARAM_NAMES, BKTParamArrays
from scheduler.bkt.sequences import Sequences


@dataclass(frozen=True, slots=True, eq=False)
class Packed:
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


def pack_rows(sequences: Sequences, row_sequence: IntArray, row_unit: IntArray) -> Packed:
    """Pack rows (``row_sequence[i]`` under unit ``row_unit[i]``) longest first."""
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
    return Packed(
        batch_sizes=[int(b) for b in batch_sizes],
        offsets=[int(o) for o in offsets],
        row_unit=row_unit,
        unit=packed_unit,
        correct=sequences.correct[packed_answer],
        last=last,
        answer=packed_answer,
    )


@dataclass(frozen=True, slots=True)
class UnitParams:
    """Parameters per unit (one skill under one restart), arrays of shape (units,)."""

    prior: FloatArray
    learn: FloatArray
    guess: FloatArray
    slip: FloatArray
    forget: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class Filtered:
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


def forward_filter(packed: Packed, unit: UnitParams) -> Filtered:
    """Filter every packed row from its unit's prior, one step at a time."""
    guess = unit.guess[packed.unit]
    slip = unit.slip[packed.unit]
    like_known = np.where(packed.correct, 1.0 - slip, slip)
    like_unknown = np.where(packed.correct, guess, 1.0 - guess)
    learn = unit.learn[packed.row_unit]
    forget = unit.forget[packed.row_unit]
    stay_unknown = 1.0 - learn
    stay_known = 1.0 - forget
    total = packed.offsets[-1]
    out = Filtered(*(np.empty(total) for _ in range(5)))
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


def one_row_per_sequence(params: BKTParamArrays, sequences: Sequences) -> tuple[Packed, UnitParams]:
    """Each sequence once, under its own skill's parameters."""
    if params.n_skills < sequences.n_skills:
        raise ValueError(f"params cover {params.n_skills} skills, data needs {sequences.n_skills}")
    unit = UnitParams(**{name: getattr(params, name) for name in PARAM_NAMES})
    rows = np.arange(sequences.n_sequences, dtype=np.int64)
    return pack_rows(sequences, rows, sequences.sequence_skill), unit


def predict_sequences(params: BKTParamArrays, sequences: Sequences) -> FloatArray:
    """P(correct) in [0, 1] before each answer, in the order of the answers given.

    Each (skill, learner) sequence starts at the skill's prior and is filtered
    answer by answer, exactly as :func:`update` would do event by event.
    """
    packed, unit = one_row_per_sequence(params, sequences)
    filtered = forward_filter(packed, unit)
    guess = params.guess[packed.unit]
    slip = params.slip[packed.unit]
    p_correct = np.empty(sequences.n_answers)
    p_correct[packed.answer] = (
        filtered.before_known * (1.0 - slip) + filtered.before_unknown * guess
    )
    return p_correct


def log_likelihood(params: BKTParamArrays, sequences: Sequences) -> FloatArray:
    """Log-likelihood in nats of each skill's answers under ``params``, shape (n_skills,)."""
    packed, unit = one_row_per_sequence(params, sequences)
    evidence = forward_filter(packed, unit).evidence
    return sum_by(packed.unit, np.log(evidence), params.n_skills)
