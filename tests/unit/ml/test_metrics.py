"""Metrics against brute-force definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ml.metrics import roc_auc, score


def _pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    wins = 0.0
    pairs = 0
    for i, j in itertools.product(range(len(y)), repeat=2):
        if y[i] == 1 and y[j] == 0:
            pairs += 1
            wins += 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
    return wins / pairs


def test_auc_equals_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=60).astype(float)
    p = np.round(rng.random(60), 1)  # many ties
    assert math.isclose(roc_auc(y, p), _pairwise_auc(y, p), rel_tol=1e-12)


def test_scores_by_definition() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.2, 0.4, 0.6])
    scores = score(y, p)
    assert scores.auc == 0.75
    assert scores.accuracy == 0.5
    assert math.isclose(scores.rmse, math.sqrt((0.01 + 0.04 + 0.36 + 0.36) / 4))
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4)) / 4
    assert math.isclose(scores.log_loss, expected)
    assert math.isnan(score(np.ones(3), np.full(3, 0.5)).auc)
