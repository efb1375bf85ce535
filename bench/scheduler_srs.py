"""SM-2 vs FSRS on a real Anki review history, scored the way srs-benchmark scores them.

Run: ``.venv/bin/python -m bench.scheduler_srs [--cards N] [--optimizer-cards N]``.
Prints a table and writes ``bench/results/scheduler_srs.json``.

Data: ``<dataset_dir>/anki_revlog_fsrs_tiny/seq2seq.tsv`` (one user's real Anki history,
9,161 cards; see its PROVENANCE.md). Before each review, each model predicts the
probability of recall from the card's history so far (:mod:`scheduler.srs.evaluation`).

Models:
* SM-2 (spec): ours, as SuperMemo describes it; probability ``0.9 ** (t / interval)``.
* SM-2 (srs-benchmark variant): the benchmark's ``models/sm2.py`` rules restated, to
  show how much of any gap to the published SM-2 figure is the variant, not the data.
* FSRS-6 default parameters, through the ``fsrs`` package.
* FSRS-6 optimised: ``fsrs.Optimizer`` (needs torch and pandas, the ``ml`` extra) on
  the training cards, evaluated on held-out cards. The file has no absolute
  timestamps, so the split is by card (seeded 80/20), not srs-benchmark's
  TimeSeriesSplit over one user's time line. The optimiser is pure-Python autograd
  (~10 ms per review on this machine), so by default it sees a seeded sample of
  ``--optimizer-cards`` training cards; ``--optimizer-cards 0`` uses them all.

Published figures (srs-benchmark README, 9,999 users, weighted by reviews):
FSRS-6 0.3214 log loss / 0.0462 RMSE(bins) / 0.7060 AUC; FSRS-6 default parameters
0.3393 / 0.0716 / 0.6891; SM-2 0.547 / 0.1484 / 0.6005. One mature user (90 % recall)
is not 10k users: compare the ordering and the gaps, not the absolute values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fsrs import Rating, ReviewLog

from learnstream.settings import get_settings
from scheduler.srs import Attempt, FSRSScheduler, SM2Scheduler
from scheduler.srs.evaluation import (
    CardHistory,
    RecallMetrics,
    evaluation_rows,
    parse_seq2seq,
    predict_fsrs,
    predict_sm2,
    predict_srs_benchmark_sm2,
    recall_metrics,
)

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler_srs.json"
PUBLISHED = {  # srs-benchmark README, "Weighted by the number of reviews"
    "FSRS-6": {"log_loss": 0.3214, "rmse_bins": 0.0462, "auc": 0.7060},
    "FSRS-6 default param.": {"log_loss": 0.3393, "rmse_bins": 0.0716, "auc": 0.6891},
    "SM-2": {"log_loss": 0.547, "rmse_bins": 0.1484, "auc": 0.6005},
}
ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)


def load(path: Path, limit: int | None) -> list[CardHistory]:
    with path.open() as lines:
        histories = parse_seq2seq(lines)
    return histories[:limit] if limit else histories


def timed(predict: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    predictions = predict()
    return predictions, time.perf_counter() - started


def review_logs(histories: Sequence[CardHistory]) -> list[ReviewLog]:
    """fsrs ReviewLogs; each card's last review is known only as pass/fail (Good/Again)."""
    logs = []
    for card_id, history in enumerate(histories):
        day = 0
        for gap, grade in zip(history.gaps_days, history.grades, strict=True):
            day += gap
            logs.append(ReviewLog(card_id, Rating(grade), ORIGIN + timedelta(days=day), None))
        final = Rating.Good if history.recalled_next[-1] else Rating.Again
        final_at = ORIGIN + timedelta(days=day + history.next_gaps_days[-1])
        logs.append(ReviewLog(card_id, final, final_at, None))
    return logs


def optimise(train: Sequence[CardHistory]) -> tuple[list[float] | None, str]:
    """fsrs.Optimizer's parameters, or None and the reason it could not run."""
    try:
        import pandas  # noqa: F401  (fsrs.Optimizer needs both)
        import torch  # noqa: F401
    except ImportError as missing:
        return None, f"skipped: fsrs.Optimizer needs torch and pandas ({missing.name} missing)"
    from fsrs.optimizer import Optimizer

    started = time.perf_counter()
    parameters = Optimizer(review_logs(train)).compute_optimal_parameters()
    seconds = time.perf_counter() - started
    return [float(p) for p in parameters], f"ran on {len(train)} cards in {seconds:.0f} s"


def per_call_us(call: Callable[[], object], repeats: int) -> float:
    for _ in range(min(repeats, 200)):
        call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats * 1e6


def review_speed() -> dict[str, float]:
    """µs per review call (attempt → new state + due_at) and per predicted_recall call."""
    now = ORIGIN + timedelta(days=30)
    attempt = Attempt(correct=True, response_time_ms=6_000)
    sm2, fsrs_scheduler = SM2Scheduler(), FSRSScheduler()
    sm2_state, fsrs_state = sm2.new_state(), fsrs_scheduler.new_state()
    for day in (0, 1, 7):  # a mid-life state: in Review, a few repetitions done
        at = ORIGIN + timedelta(days=day)
        sm2_state = sm2.review(sm2_state, attempt, at).state
        fsrs_state = fsrs_scheduler.review(fsrs_state, attempt, at).state
    return {
        "sm2_review_us": per_call_us(lambda: sm2.review(sm2_state, attempt, now), 20_000),
        "fsrs_review_us": per_call_us(
            lambda: fsrs_scheduler.review(fsrs_state, attempt, now), 20_000
        ),
        "sm2_recall_us": per_call_us(lambda: sm2.predicted_recall(sm2_state, now), 20_000),
        "fsrs_recall_us": per_call_us(
            lambda: fsrs_scheduler.predicted_recall(fsrs_state, now), 20_000
        ),
    }


def row(name: str, metrics: RecallMetrics, seconds: float | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {"model": name, **asdict(metrics)}
    if seconds is not None:
        figures["us_per_review_replayed"] = seconds / metrics.reviews * 1e6
    return figures


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'model':<36} {'log loss':>9} {'RMSE(bins)':>11} {'AUC':>7} {'reviews':>8}")
    for figures in rows:
        print(
            f"{figures['model']:<36} {figures['log_loss']:>9.4f} {figures['rmse_bins']:>11.4f} "
            f"{figures['auc']:>7.4f} {figures['reviews']:>8}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=0, help="use the first N cards (0: all)")
    parser.add_argument(
        "--optimizer-cards",
        type=int,
        default=1_500,
        help="training cards given to fsrs.Optimizer (0: all, -1: skip the optimiser)",
    )
    parser.add_argument("--seed", type=int, default=20_240_301)
    args = parser.parse_args(argv)

    path = get_settings().dataset_dir / "anki_revlog_fsrs_tiny" / "seq2seq.tsv"
    if not path.exists():
        print(f"dataset not found: {path}", file=sys.stderr)
        return 2
    histories = load(path, args.cards or None)
    rows = evaluation_rows(histories)
    print(
        f"{len(histories)} cards, {len(rows)} predicted reviews, "
        f"recall rate {rows.recalled.mean():.3f}"
    )

    sm2_p, sm2_s = timed(lambda: predict_sm2(histories))
    bench_p, bench_s = timed(lambda: predict_srs_benchmark_sm2(histories))
    fsrs_p, fsrs_s = timed(lambda: predict_fsrs(histories, FSRSScheduler()))
    all_rows = [
        row("FSRS-6 default param. (fsrs)", recall_metrics(rows, fsrs_p), fsrs_s),
        row("SM-2 spec (ours)", recall_metrics(rows, sm2_p), sm2_s),
        row("SM-2 srs-benchmark variant", recall_metrics(rows, bench_p), bench_s),
    ]
    print_table("All cards (no training involved)", all_rows)
    published = [
        {"model": f"published {k}", **v, "reviews": 349_923_850} for k, v in PUBLISHED.items()
    ]
    print_table("Published, srs-benchmark 9,999 users (weighted by reviews)", published)

    # Held-out comparison with optimised FSRS parameters.
    rng = np.random.default_rng(args.seed)
    is_test = rng.random(len(histories)) < 0.2
    train = [h for h, test in zip(histories, is_test, strict=True) if not test]
    test = [h for h, test in zip(histories, is_test, strict=True) if test]
    if args.optimizer_cards < 0:
        parameters, optimiser_note = None, "skipped by --optimizer-cards -1"
    else:
        if args.optimizer_cards and args.optimizer_cards < len(train):
            chosen = rng.choice(len(train), size=args.optimizer_cards, replace=False)
            train = [train[i] for i in sorted(chosen)]
        parameters, optimiser_note = optimise(train)
    test_rows = evaluation_rows(test)
    held_out = [
        row(
            "FSRS-6 default param. (fsrs)",
            recall_metrics(test_rows, predict_fsrs(test, FSRSScheduler())),
        ),
        row("SM-2 spec (ours)", recall_metrics(test_rows, predict_sm2(test))),
        row(
            "SM-2 srs-benchmark variant", recall_metrics(test_rows, predict_srs_benchmark_sm2(test))
        ),
    ]
    if parameters is not None:
        optimised = FSRSScheduler.with_parameters(parameters)
        held_out.insert(
            0,
            row(
                "FSRS-6 optimised (fsrs.Optimizer)",
                recall_metrics(test_rows, predict_fsrs(test, optimised)),
            ),
        )
    print_table(f"Held-out 20% of cards ({len(test)} cards); optimiser {optimiser_note}", held_out)

    speed = review_speed()
    print("\nSpeed (one process, this machine)")
    for name, value in speed.items():
        print(f"  {name:<16} {value:8.1f} µs")
    for figures in all_rows:
        print(
            f"  replay+predict  {figures['us_per_review_replayed']:8.1f} µs/review "
            f" {figures['model']}"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "dataset": str(path),
                "cards": len(histories),
                "reviews": len(rows),
                "recall_rate": float(rows.recalled.mean()),
                "all_cards": all_rows,
                "held_out": {
                    "test_cards": len(test),
                    "optimizer_train_cards": len(train),
                    "optimizer": optimiser_note,
                    "optimised_parameters": parameters,
                    "rows": held_out,
                },
                "published_srs_benchmark": PUBLISHED,
                "speed_us": speed,
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "measured_at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
