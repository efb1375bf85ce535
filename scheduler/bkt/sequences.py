"""Answers grouped into one sequence per (skill, learner), the input of filtering and EM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from scheduler.bkt.arrays import BoolArray, IntArray, frozen_flags, frozen_ints


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
        correct=frozen_flags(correct_flags),
        skill=frozen_ints(skill_ids),
        sequence=frozen_ints(sequence),
        step=frozen_ints(step),
        sequence_skill=frozen_ints(unique_keys // n_learners),
        sequence_length=frozen_ints(length),
        answers_by_sequence=frozen_ints(by_sequence),
        sequence_start=frozen_ints(start),
    )
