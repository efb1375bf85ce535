"""Evaluation on held-out learners: a model and BKT scored on exactly the same answers.

The scored answers are the targets of :class:`ml.datasets.KTBatch`: every answer,
the first of each window included (predicted from the initial state), minus repeated
copies of a multi-skill question. Metrics: AUC, accuracy, RMSE, log-loss overall and
per history-length subgroup (answers the learner gave before, counted over the whole sequence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from ml.datasets import Window, iterate_batches
from ml.metrics import Scores, score
from ml.models.base import KnowledgeTracer
from scheduler import bkt

# Subgroups by how many answers the learner had given before the scored one:
# (label, lowest included, highest excluded or None).
HISTORY_GROUPS: tuple[tuple[str, int, int | None], ...] = (
    ("history_lt10", 0, 10),
    ("history_10_49", 10, 50),
    ("history_50_199", 50, 200),
    ("history_ge200", 200, None),
)


@dataclass(frozen=True, slots=True)
class Predictions:
    """Aligned arrays over the scored answers (one entry each)."""

    outcomes: npt.NDArray[np.float64]  # 1.0 correct, 0.0 wrong
    p_correct: npt.NDArray[np.float64]  # in [0, 1]
    history_length: npt.NDArray[np.int64]  # answers of the learner before this one, >= 0
    window: npt.NDArray[np.int64] | None = None  # index of the answer's window
    skill: npt.NDArray[np.int64] | None = None  # skill index of the answer


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Overall scores and scores per history-length subgroup."""

    overall: Scores
    by_history: Mapping[str, Scores]

    def flat_metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}_auc`` ... plus ``{prefix}_auc_<group>``, finite values only (for MLflow)."""
        values = {f"{prefix}_{k}": v for k, v in self.overall.to_dict().items()}
        for group, scores in self.by_history.items():
            values[f"{prefix}_auc_{group}"] = scores.auc
            values[f"{prefix}_count_{group}"] = float(scores.count)
        return {k: v for k, v in values.items() if np.isfinite(v)}


def report(predictions: Predictions) -> EvaluationReport:
    """Scores overall and per :data:`HISTORY_GROUPS` subgroup."""
    groups: dict[str, Scores] = {}
    for label, low, high in HISTORY_GROUPS:
        selected = predictions.history_length >= low
        if high is not None:
            selected &= predictions.history_length < high
        groups[label] = score(predictions.outcomes[selected], predictions.p_correct[selected])
    return EvaluationReport(score(predictions.outcomes, predictions.p_correct), groups)


def predict_model(
    model: KnowledgeTracer,
    windows: Sequence[Window],
    *,
    device: torch.device,
    batch_size: int = 128,
    scored_only: bool = True,
) -> Predictions:
    """The model's P(correct) for every scored answer of ``windows`` (eval mode, no gradients).

    ``scored_only=False`` also predicts the unscored copies of multi-skill questions
    (every answer of every window, as ``python -m ml predict`` writes them).
    """
    was_training = model.training
    model.eval()
    outcomes: list[npt.NDArray[np.float64]] = []
    probabilities: list[npt.NDArray[np.float64]] = []
    history: list[npt.NDArray[np.int64]] = []
    window: list[npt.NDArray[np.int64]] = []
    skill: list[npt.NDArray[np.int64]] = []
    with torch.no_grad():
        for first, batch in zip(
            range(0, len(windows), batch_size),
            iterate_batches(windows, batch_size, device),
            strict=True,
        ):
            logits = model(batch.skills, batch.correct, batch.items)
            targets = batch.target_mask if scored_only else batch.mask
            positions = torch.arange(batch.skills.shape[1], device=device).unsqueeze(0)
            rows = torch.arange(first, first + batch.size, device=device).unsqueeze(1)
            outcomes.append(batch.correct[targets].double().cpu().numpy())
            probabilities.append(torch.sigmoid(logits)[targets].double().cpu().numpy())
            history.append((batch.history_offset.unsqueeze(1) + positions)[targets].cpu().numpy())
            window.append(rows.expand_as(targets)[targets].cpu().numpy())
            skill.append(batch.skills[targets].cpu().numpy())
    model.train(was_training)
    if not outcomes:
        empty = np.zeros(0, dtype=np.int64)
        return Predictions(empty.astype(np.float64), empty.astype(np.float64), empty, empty, empty)
    return Predictions(
        np.concatenate(outcomes),
        np.concatenate(probabilities),
        np.concatenate(history),
        np.concatenate(window),
        np.concatenate(skill),
    )


def _flatten(windows: Sequence[Window]) -> tuple[npt.NDArray[np.int64], ...]:
    # Answers of all windows back to back; each window counts as its own learner.
    skills = np.concatenate([w.skills for w in windows]).astype(np.int64)
    correct = np.concatenate([w.correct for w in windows]).astype(np.int64)
    learner = np.repeat(np.arange(len(windows)), [len(w.skills) for w in windows])
    target = np.concatenate([w.scored for w in windows])
    history = np.concatenate([w.history_offset + np.arange(len(w.skills)) for w in windows])
    return skills, correct, learner, target, history


def fit_bkt(
    windows: Sequence[Window], num_skills: int, rng: np.random.Generator, *, restarts: int = 5
) -> bkt.BKTParamArrays:
    """Per-skill BKT parameters fitted by EM (``scheduler.bkt.fit_em``) on the windows' answers."""
    skills, correct, learner, _, _ = _flatten(windows)
    sequences = bkt.build_sequences(skills, learner, correct, n_skills=num_skills)
    return bkt.fit_em(sequences, rng, restarts=restarts).param_arrays()


def predict_bkt(windows: Sequence[Window], params: bkt.BKTParamArrays) -> Predictions:
    """BKT's P(correct) for the same scored answers as :func:`predict_model`.

    Each window starts from every skill's prior, like the model's empty state.
    """
    skills, correct, learner, target, history = _flatten(windows)
    sequences = bkt.build_sequences(skills, learner, correct, n_skills=params.n_skills)
    p_correct = bkt.predict_sequences(params, sequences)
    return Predictions(
        correct[target].astype(np.float64),
        p_correct[target],
        history[target].astype(np.int64),
        learner[target].astype(np.int64),
        skills[target],
    )
