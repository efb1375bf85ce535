"""Replaying real review histories through SM-2 and FSRS, scored the srs-benchmark way.

Method (open-spaced-repetition/srs-benchmark, README "Evaluation" and ``utils.py``):
before each review, predict the probability of recall from the card's history so far,
then compare with the outcome (recalled = grade > Again).

* Log loss: mean binary cross-entropy, predictions clipped to [eps, 1 - eps] (float64
  machine epsilon, as scikit-learn's ``log_loss``).
* RMSE (bins): rows are grouped by three binned features: the elapsed interval
  (``2.48 * 3.62 ** floor(log(t) / log(3.62))``), the review number
  (``1.99 * 1.89 ** floor(log(i) / log(1.89))``) and the lapse count so far
  (``1.65 * 1.73 ** floor(log(l) / log(1.73))``, 0 stays 0); within each bin the mean
  prediction is compared with the mean outcome, and the RMSE is weighted by bin size
  (``utils.py`` ``rmse_matrix``).
* AUC: area under the ROC curve (Mann–Whitney, ties counted half).

SM-2 grades: the benchmark feeds SM-2 the Anki grade plus one (Again 2, Hard 3, Good 4,
Easy 5; ``models/sm2.py``), and so do we. Its recall probability is
``0.9 ** (elapsed / interval)`` (see :mod:`scheduler.srs.sm2`).

The input format is ``seq2seq.tsv`` from open-spaced-repetition/fsrs-optimizer-tiny
(one card per row; see the dataset's PROVENANCE.md). Reading the file is the caller's
job; this module parses lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from fsrs import Rating
from scipy.stats import rankdata

from scheduler.srs.fsrs_scheduler import FSRSScheduler
from scheduler.srs.sm2 import SM2State, sm2_recall, sm2_review

FloatArray = npt.NDArray[np.float64]

# Reviews are placed on a calendar from this origin; only differences matter.
_ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)
_EPS = float(np.finfo(np.float64).eps)
# srs-benchmark's s_max: longest interval (days) its SM-2 may produce.
_SRS_BENCHMARK_S_MAX = 36_500


@dataclass(frozen=True, slots=True)
class CardHistory:
    """One card's reviews, as in ``seq2seq.tsv``.

    ``gaps_days[k]`` is the whole days between review k-1 and review k (0 for the first);
    ``grades[k]`` the Anki grade 1–4 of review k; ``next_gaps_days[k]`` the days from
    review k to the next one; ``recalled_next[k]`` 1 if that next review was passed.
    The card's last review is known only through ``recalled_next[-1]``.
    """

    gaps_days: tuple[int, ...]
    grades: tuple[int, ...]
    next_gaps_days: tuple[int, ...]
    recalled_next: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.grades)
        if (
            not n
            or not len(self.gaps_days) == len(self.next_gaps_days) == len(self.recalled_next) == n
        ):
            raise ValueError(f"card history columns differ in length: {self!r}")
        if any(g not in (1, 2, 3, 4) for g in self.grades):
            raise ValueError(f"Anki grades must be 1-4: {self.grades}")

    @property
    def review_days(self) -> tuple[int, ...]:
        """Day (from the first review) of each graded review."""
        return tuple(int(d) for d in np.cumsum(self.gaps_days))


def parse_seq2seq(lines: Iterable[str]) -> list[CardHistory]:
    """Card histories from the lines of ``seq2seq.tsv`` (header line included)."""
    histories = []
    rows = iter(lines)
    header = next(rows, "").rstrip("\n").split("\t")
    expected = ["t_history", "r_history", "delta_ts", "ys"]
    if header != expected:
        raise ValueError(f"seq2seq header must be {expected}, got {header}")
    for line_number, line in enumerate(rows, start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 4:
            raise ValueError(f"line {line_number}: expected 4 tab-separated fields")
        t_history, r_history, delta_ts, ys = (
            tuple(int(float(v)) for v in field.split(",")) for field in fields
        )
        histories.append(CardHistory(t_history, r_history, delta_ts, ys))
    return histories


@dataclass(frozen=True, slots=True, eq=False)
class EvaluationRows:
    """One row per predicted review, in card order, as parallel arrays.

    ``recalled`` is the outcome (0/1); ``elapsed_days`` the days since the previous
    review; ``review_number`` the 1-based index of the predicted review (≥ 2);
    ``lapses`` the Again grades in the history before it (first review excluded, as
    srs-benchmark does); ``card_index`` the card's position in the input.
    """

    recalled: FloatArray
    elapsed_days: FloatArray
    review_number: FloatArray
    lapses: FloatArray
    card_index: npt.NDArray[np.intp]

    def __len__(self) -> int:
        return int(self.recalled.shape[0])


def evaluation_rows(histories: Sequence[CardHistory]) -> EvaluationRows:
    """The rows every model predicts, in the order the ``predict_*`` functions emit."""
    recalled: list[int] = []
    elapsed: list[int] = []
    number: list[int] = []
    lapses: list[int] = []
    card: list[int] = []
    for index, history in enumerate(histories):
        lapse_count = 0
        for k, grade in enumerate(history.grades):
            if k > 0 and grade == 1:
                lapse_count += 1
            recalled.append(history.recalled_next[k])
            elapsed.append(history.next_gaps_days[k])
            number.append(k + 2)
            lapses.append(lapse_count)
            card.append(index)
    return EvaluationRows(
        recalled=np.asarray(recalled, dtype=np.float64),
        elapsed_days=np.asarray(elapsed, dtype=np.float64),
        review_number=np.asarray(number, dtype=np.float64),
        lapses=np.asarray(lapses, dtype=np.float64),
        card_index=np.asarray(card, dtype=np.intp),
    )


def _review_times(history: CardHistory) -> list[datetime]:
    return [_ORIGIN + timedelta(days=day) for day in history.review_days]


def predict_sm2(histories: Sequence[CardHistory]) -> FloatArray:
    """Our spec SM-2's recall probability before each review (grade + 1 as quality)."""
    predictions: list[float] = []
    for history in histories:
        state = SM2State()
        for reviewed_at, grade, gap in zip(
            _review_times(history), history.grades, history.next_gaps_days, strict=True
        ):
            state = sm2_review(state, grade + 1, reviewed_at)
            predictions.append(sm2_recall(state, reviewed_at + timedelta(days=gap)))
    return np.asarray(predictions, dtype=np.float64)


def srs_benchmark_sm2_intervals(grades: Sequence[int]) -> list[int]:
    """Intervals (days) of srs-benchmark's ``sm2`` after each of ``grades`` (Anki 1–4).

    A re-statement of open-spaced-repetition/srs-benchmark ``models/sm2.py`` for
    comparison only: unlike the SuperMemo text it lowers EF on failed reviews too and
    rounds ``I * EF`` to the nearest day (``round(ivl + 0.01)``) instead of up.
    """
    interval = 0.0
    easiness = 2.5
    repetitions = 0
    intervals = []
    for grade in grades:
        quality = grade + 1
        if quality > 2:
            if repetitions == 0:
                interval, repetitions = 1.0, 1
            elif repetitions == 1:
                interval, repetitions = 6.0, 2
            else:
                interval, repetitions = interval * easiness, repetitions + 1
        else:
            interval, repetitions = 1.0, 0
        lapse = 5 - quality
        easiness = max(1.3, easiness + (0.1 - lapse * (0.08 + lapse * 0.02)))
        interval = float(min(max(1, round(interval + 0.01)), _SRS_BENCHMARK_S_MAX))
        intervals.append(int(interval))
    return intervals


def predict_srs_benchmark_sm2(histories: Sequence[CardHistory]) -> FloatArray:
    """Recall probabilities of srs-benchmark's own SM-2 variant (for cross-checking)."""
    predictions: list[float] = []
    for history in histories:
        for interval, gap in zip(
            srs_benchmark_sm2_intervals(history.grades), history.next_gaps_days, strict=True
        ):
            predictions.append(0.9 ** (gap / interval))
    return np.asarray(predictions, dtype=np.float64)


def predict_fsrs(histories: Sequence[CardHistory], scheduler: FSRSScheduler) -> FloatArray:
    """FSRS recall probability before each review, replaying the grades through ``fsrs``."""
    predictions: list[float] = []
    for history in histories:
        state = scheduler.new_state()
        for reviewed_at, grade, gap in zip(
            _review_times(history), history.grades, history.next_gaps_days, strict=True
        ):
            state = scheduler.review_rating(state, Rating(grade), reviewed_at).state
            predictions.append(scheduler.predicted_recall(state, reviewed_at + timedelta(days=gap)))
    return np.asarray(predictions, dtype=np.float64)


def log_loss(recalled: FloatArray, p_recall: FloatArray) -> float:
    """Mean binary cross-entropy (nats) of ``p_recall`` in [0, 1] against 0/1 outcomes."""
    p = np.clip(p_recall, _EPS, 1.0 - _EPS)
    return float(-np.mean(recalled * np.log(p) + (1.0 - recalled) * np.log1p(-p)))


def _log_bin(values: FloatArray, scale: float, base: float) -> FloatArray:
    # srs-benchmark: scale * base ** floor(log(x) / log(base)); x = 0 falls in bin 0.
    positive = values > 0
    safe = np.where(positive, values, 1.0)
    binned = scale * np.power(base, np.floor(np.log(safe) / math.log(base)))
    return np.where(positive, binned, 0.0)


def rmse_bins(rows: EvaluationRows, p_recall: FloatArray) -> float:
    """srs-benchmark's RMSE (bins), in [0, 1]; see the module docstring."""
    keys = np.stack(
        [
            np.round(_log_bin(rows.elapsed_days, 2.48, 3.62), 2),
            np.round(_log_bin(rows.review_number, 1.99, 1.89), 0),
            np.round(_log_bin(rows.lapses, 1.65, 1.73), 0),
        ],
        axis=1,
    )
    _, bin_of_row = np.unique(keys, axis=0, return_inverse=True)
    bin_of_row = bin_of_row.reshape(-1)
    counts = np.bincount(bin_of_row).astype(np.float64)
    mean_y = np.bincount(bin_of_row, weights=rows.recalled) / counts
    mean_p = np.bincount(bin_of_row, weights=p_recall) / counts
    return float(np.sqrt(np.sum(counts * (mean_y - mean_p) ** 2) / np.sum(counts)))


def auc(recalled: FloatArray, p_recall: FloatArray) -> float:
    """Area under the ROC curve in [0, 1]; NaN when only one outcome occurs."""
    positives = recalled == 1
    n_pos = int(np.sum(positives))
    n_neg = int(recalled.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(p_recall)
    return float((np.sum(ranks[positives]) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True, slots=True)
class RecallMetrics:
    """Calibration (log loss, RMSE bins: lower is better) and discrimination (AUC)."""

    log_loss: float
    rmse_bins: float
    auc: float
    reviews: int


def recall_metrics(rows: EvaluationRows, p_recall: FloatArray) -> RecallMetrics:
    """All three srs-benchmark metrics for predictions aligned with ``rows``."""
    if p_recall.shape != rows.recalled.shape:
        raise ValueError(f"{p_recall.shape[0]} predictions for {len(rows)} rows")
    if np.any((p_recall < 0) | (p_recall > 1)) or not np.all(np.isfinite(p_recall)):
        raise ValueError("predicted recall must be finite and in [0, 1]")
    return RecallMetrics(
        log_loss=log_loss(rows.recalled, p_recall),
        rmse_bins=rmse_bins(rows, p_recall),
        auc=auc(rows.recalled, p_recall),
        reviews=len(rows),
    )
