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

Modules: :mod:`~scheduler.bkt.model` (parameters, per-event update),
:mod:`~scheduler.bkt.sequences` (grouping answers), :mod:`~scheduler.bkt.forward`
(filtering whole sequences), :mod:`~scheduler.bkt.em` (fitting). Every public name
is importable from ``scheduler.bkt``.
"""

from __future__ import annotations

from scheduler.bkt.arrays import BoolArray, FloatArray, IntArray
from scheduler.bkt.em import DEFAULT_BOUNDS, BKTBounds, BKTFit, SkillFit, fit_em
from scheduler.bkt.forward import log_likelihood, predict_sequences
from scheduler.bkt.model import (
    DEFAULT_PARAMS,
    PARAM_NAMES,
    BKTParamArrays,
    BKTParams,
    is_degenerate,
    predict_correct,
    predict_correct_many,
    simulate_answers,
    update,
    update_many,
)
from scheduler.bkt.sequences import Sequences, build_sequences

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_PARAMS",
    "PARAM_NAMES",
    "BKTBounds",
    "BKTFit",
    "BKTParamArrays",
    "BKTParams",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "Sequences",
    "SkillFit",
    "build_sequences",
    "fit_em",
    "is_degenerate",
    "log_likelihood",
    "predict_correct",
    "predict_correct_many",
    "predict_sequences",
    "simulate_answers",
    "update",
    "update_many",
]
