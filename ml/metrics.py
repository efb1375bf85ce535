"""Binary prediction metrics on P(correct) against 0/1 outcomes (pure numpy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

# Log-loss clips probabilities to [EPS, 1 - EPS] so one confident miss stays finite.
EPS = 1e-7


@dataclass(frozen=True, slots=True)
class Scores:
    """AUC, accuracy (threshold 0.5), RMSE and log-loss (natural log) over ``count`` answers.

    AUC is ``nan`` when the outcomes are all of one class.
    """

    auc: float
    accuracy: float
    rmse: float
    log_loss: float
    count: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def roc_auc(outcomes: npt.NDArray[np.floating], p_correct: npt.NDArray[np.floating]) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie-averaged ranks); ``nan`` if one class."""
    positives = outcomes > 0.5
    n_pos = int(positives.sum())
    n_neg = outcomes.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p_correct)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score(outcomes: npt.NDArray[np.floating], p_correct: npt.NDArray[np.floating]) -> Scores:
    """All metrics for predictions ``p_correct`` in [0, 1] of ``outcomes`` in {0, 1}."""
    y = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(p_correct, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"outcomes {y.shape} and predictions {p.shape} differ in shape")
    if y.size == 0:
        nan = float("nan")
        return Scores(nan, nan, nan, nan, 0)
    clipped = np.clip(p, EPS, 1 - EPS)
    return Scores(
        auc=roc_auc(y, p),
        accuracy=float(np.mean((p >= 0.5) == (y > 0.5))),
        rmse=float(np.sqrt(np.mean((p - y) ** 2))),
        log_loss=float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        count=int(y.size),
    )


def calibration(
    outcomes: npt.NDArray[np.floating], p_correct: npt.NDArray[np.floating], bins: int = 10
) -> list[dict[str, float]]:
    """Reliability table: per equal-width bin of P(correct), mean prediction, observed rate, count.

    Empty bins are left out. A calibrated model has ``mean_p`` close to ``observed``.
    """
    y = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(p_correct, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    table: list[dict[str, float]] = []
    for b in range(bins):
        selected = which == b
        count = int(selected.sum())
        if count:
            table.append(
                {
                    "mean_p": float(p[selected].mean()),
                    "observed": float(y[selected].mean()),
                    "count": float(count),
                }
            )
    return table
