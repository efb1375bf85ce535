"""Per-answer predictions for a dataset file: one row per answer, the first of each window too.

``python -m ml predict`` writes these rows as csv: ``learner`` (as the reader names
learners), ``position`` (0-based index of the answer in the learner's sequence),
``skill`` and ``item`` (raw ids; item empty when the format has none), ``outcome``
(0/1), ``p`` (the model's P(correct) before the answer, from the answers before it in
its window; the first answer of a window from the model's initial state) and
``scored`` (0 for the repeated copies of a multi-skill question, which the metrics skip).
Answers on skills outside the model's vocabulary cannot be predicted and are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ml.datasets import RawSequence, cut_windows, encode
from ml.evaluate import predict_model
from ml.registry import LoadedModel

COLUMNS = ("learner", "position", "skill", "item", "outcome", "p", "scored")


@dataclass(frozen=True, slots=True)
class AnswerPrediction:
    """One answer and the model's P(correct) for it (see the module docstring)."""

    learner: str
    position: int  # 0-based, in the learner's whole sequence
    skill: str
    item: str
    outcome: int  # 1 correct, 0 wrong
    p: float  # in [0, 1]
    scored: bool


def predict_answers(
    loaded: LoadedModel,
    raw: Sequence[RawSequence],
    *,
    device: torch.device,
    batch_size: int = 128,
) -> list[AnswerPrediction]:
    """Predict every answer of ``raw`` whose skill the model knows, in file order."""
    known_skills = set(loaded.skill_vocabulary)
    # Positions of the answers that survive encoding (unknown skills are dropped).
    kept_positions = [
        np.flatnonzero([skill in known_skills for skill in sequence.skill_ids]) for sequence in raw
    ]
    sequences = encode(
        raw,
        loaded.skill_vocabulary,
        item_vocabulary=loaded.item_vocabulary,
        drop_unknown=True,
    )
    windows = cut_windows(sequences, loaded.window_length)
    learner_of_window: dict[int, int] = {}
    index = 0
    for number, sequence in enumerate(sequences):
        for _ in range(0, len(sequence), loaded.window_length):
            learner_of_window[index] = number
            index += 1
    predicted = predict_model(
        loaded.model, windows, device=device, batch_size=batch_size, scored_only=False
    )
    assert predicted.window is not None  # predict_model always fills it
    rows: list[AnswerPrediction] = []
    for window, history, outcome, p in zip(
        predicted.window,
        predicted.history_length,
        predicted.outcomes,
        predicted.p_correct,
        strict=True,
    ):
        number = learner_of_window[int(window)]
        source, encoded = raw[number], sequences[number]
        original = int(kept_positions[number][history])
        rows.append(
            AnswerPrediction(
                learner=source.learner_id,
                position=original,
                skill=source.skill_ids[original],
                item=source.item_ids[original] if source.item_ids is not None else "",
                outcome=int(outcome),
                p=float(p),
                scored=bool(encoded.scored[history]),
            )
        )
    return rows


def write_predictions(rows: Sequence[AnswerPrediction], path: Path) -> None:
    """Write ``rows`` as csv with the :data:`COLUMNS` header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                (
                    row.learner,
                    row.position,
                    row.skill,
                    row.item,
                    row.outcome,
                    f"{row.p:.6f}",
                    int(row.scored),
                )
            )
