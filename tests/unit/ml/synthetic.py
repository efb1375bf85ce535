"""Synthetic learner sequences with a pattern a model can learn exactly."""

from __future__ import annotations

import numpy as np

from ml.datasets import LearnerSequence


def alternating_sequences(n_learners: int, length: int, num_skills: int) -> list[LearnerSequence]:
    """A learnable pattern: skill ``(t + offset) % K``, answer correct iff the previous was wrong.

    Each learner starts at a random skill and answer (seeded), so only the rule
    "flip the last answer" predicts the next one.
    """
    rng = np.random.default_rng(7)
    sequences = []
    for learner in range(n_learners):
        first = int(rng.integers(0, 2))
        offset = int(rng.integers(0, num_skills))
        correct = np.array([(first + t) % 2 for t in range(length)], dtype=np.int8)
        skills = np.array([(t + offset) % num_skills for t in range(length)], dtype=np.int64)
        sequences.append(
            LearnerSequence(f"learner-{learner}", skills, correct, np.ones(length, dtype=np.bool_))
        )
    return sequences
