"""Model and BKT are scored on exactly the same answers, with subgroup scores."""

from __future__ import annotations

import numpy as np
import torch

from ml.datasets import LearnerSequence, cut_windows
from ml.evaluate import HISTORY_GROUPS, fit_bkt, predict_bkt, predict_model, report
from ml.models import ModelConfig, build_model
from tests.unit.ml.synthetic import alternating_sequences

CPU = torch.device("cpu")


def test_model_and_bkt_score_the_same_targets() -> None:
    sequences = alternating_sequences(6, 30, 3)
    # One sequence with an unscored copy, which neither may score.
    copy = LearnerSequence(
        "copy",
        np.array([0, 1, 1, 2], dtype=np.int64),
        np.array([1, 0, 0, 1], dtype=np.int8),
        np.array([True, True, False, True]),
    )
    windows = cut_windows([*sequences, copy], 12)
    model = build_model(ModelConfig(kind="dkt_lstm", num_skills=3, hidden_dim=8), CPU)
    from_model = predict_model(model, windows, device=CPU, batch_size=4)
    params = fit_bkt(windows, 3, np.random.default_rng(0), restarts=2)
    from_bkt = predict_bkt(windows, params)
    expected = sum(int(w.scored.sum()) for w in windows)  # first answers included
    assert from_model.outcomes.shape == from_bkt.outcomes.shape == (expected,)
    assert np.array_equal(from_model.history_length, from_bkt.history_length)
    assert np.array_equal(np.sort(from_model.outcomes), np.sort(from_bkt.outcomes))
    assert np.all((from_bkt.p_correct >= 0) & (from_bkt.p_correct <= 1))


def test_report_splits_by_history_length() -> None:
    sequences = alternating_sequences(4, 230, 3)
    windows = cut_windows(sequences, 200)
    params = fit_bkt(windows, 3, np.random.default_rng(0), restarts=1)
    evaluation = report(predict_bkt(windows, params))
    assert set(evaluation.by_history) == {label for label, _, _ in HISTORY_GROUPS}
    counts = {label: s.count for label, s in evaluation.by_history.items()}
    # Per learner: history 0..9 -> 10, 10..49 -> 40, 50..199 -> 150, 200..229 -> 30
    # (every answer is scored, the first of each window from the prior).
    assert counts == {
        "history_lt10": 40,
        "history_10_49": 160,
        "history_50_199": 600,
        "history_ge200": 120,
    }
    assert sum(counts.values()) == evaluation.overall.count
    flat = evaluation.flat_metrics("bkt")
    assert "bkt_auc" in flat
    assert "bkt_auc_history_lt10" in flat
