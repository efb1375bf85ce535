"""Knowledge tracing on the shared ASSISTments splits: DKT-LSTM, SAKT and AKT next to BKT.

Run: ``.venv/bin/python -m bench.ml_dkt [--quick] [--seeds 3] [--epochs 30]
[--max-learners N] [--datasets a,b] [--models dkt_lstm,akt]``.
Prints a table (AUC mean ± sd over seeds, every answer scored) and writes
``bench/results/ml_dkt.json``.

Every model is trained on the published train split (the validation file where the
split has one, else 10 % of the train learners) with early stopping on validation
AUC, then scored once on the test learners: **every** answer, the first of each
200-answer window included (predicted from the initial state). BKT
(``scheduler.bkt.fit_em``) is fitted on the same training windows and scored on
exactly the same answers. ``assistments2009_akt_pid`` is question-level (pyKT's
leakage-free protocol: the 2nd..kth copies of a multi-skill question are not scored);
its "all rows" line scores them too. ``--max-learners`` keeps the first N learners of
every part (quick, not comparable with published figures: say so when reporting).

Serving: predictions per second of :class:`ml.serving.ModelTracer`, one attempt per
learner for many learners in one call (batched) versus one attempt per call (single).
Nothing is registered in MLflow; checkpoints go to a temporary folder (no resume).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learnstream.settings import Settings, get_settings
from ml.datasets import cut_windows
from ml.evaluate import predict_bkt, predict_model
from ml.metrics import calibration, score
from ml.models import ModelConfig
from ml.pipeline import DataChoice, TrainingOutcome, load_split, run_training
from ml.registry import LoadedModel
from ml.serving import AttemptInput, ModelTracer
from ml.train import EpochLog, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "ml_dkt.json"
CPU = torch.device("cpu")
# Published figures (see shared/data/README.md; check the protocol before comparing).
PUBLISHED = {
    "assistments2009_dkvmn": "DKT 0.805 (DKVMN paper, this split)",
    "assistments2009_akt_pid": "DKT 0.754 question-level (pyKT; other folds and filter)",
    "assistments2015_dkvmn": "DKT ~0.725 (DKVMN paper, recalled, not re-checked)",
    "assistments2017_dktplus": "DKT+ paper reports DKT ~0.73 (recalled, not re-checked)",
}
# The targets (every answer scored, mean over 3 seeds).
TARGETS = {"assistments2009_dkvmn": 0.825, "assistments2009_akt_pid": 0.78}
DATASETS = (
    "assistments2009_dkvmn",
    "assistments2009_akt_pid",
    "assistments2015_dkvmn",
    "assistments2017_dktplus",
)


@dataclass(frozen=True, slots=True)
class Job:
    dataset: str
    model: str
    epochs: int
    seed: int


def _jobs(args: argparse.Namespace) -> list[Job]:
    if args.quick:
        return [Job("assistments2009_dkvmn", m, 1, 0) for m in ("dkt_lstm", "sakt", "akt")]
    datasets = args.datasets.split(",") if args.datasets else list(DATASETS)
    models = args.models.split(",")
    return [
        Job(dataset, model, args.epochs, seed)
        for dataset in datasets
        for model in models
        for seed in range(args.seeds)
    ]


def _print_epoch(entry: EpochLog) -> None:
    print(
        f"    epoch {entry.epoch:3d} loss {entry.train_loss:.4f} train AUC {entry.train_auc:.4f} "
        f"val AUC {entry.validation_auc:.4f} {entry.seconds:.1f} s",
        flush=True,
    )


def _leaky_scores(
    settings: Settings, outcome: TrainingOutcome, window: int, n: int | None
) -> dict[str, float]:
    """Model and BKT AUC when every row is scored, copies of multi-skill questions included."""
    _, _, test = load_split(settings, DataChoice("assistments2009_akt_pid", max_learners=n), 0)
    windows = [
        replace(w, scored=np.ones_like(w.scored)) for w in cut_windows(test.sequences, window)
    ]
    model = predict_model(outcome.model, windows, device=CPU)
    bkt = predict_bkt(windows, outcome.bkt_params)
    return {
        "model_auc_all_rows": score(model.outcomes, model.p_correct).auc,
        "bkt_auc_all_rows": score(bkt.outcomes, bkt.p_correct).auc,
        "scored_all_rows": float(model.outcomes.size),
    }


def _serving_rate(outcome: TrainingOutcome, settings: Settings, window: int) -> dict[str, float]:
    """Predictions per second, batched (many learners per call) vs single (one per call)."""
    _, _, test = load_split(settings, DataChoice("assistments2009_dkvmn"), 0)
    vocabulary = outcome.skill_vocabulary
    learners = [s for s in test.sequences if len(s) >= 20][:256]
    rounds = [
        [
            AttemptInput(s.learner_id, (vocabulary[int(s.skills[t])],), bool(s.correct[t]))
            for s in learners
        ]
        for t in range(20)
    ]
    loaded = LoadedModel(outcome.model, vocabulary, window, "bench")
    batched = ModelTracer(loaded, CPU)
    started = time.perf_counter()
    for attempts in rounds:
        batched.observe(attempts)
    batched_rate = sum(len(r) for r in rounds) / (time.perf_counter() - started)
    single = ModelTracer(loaded, CPU)
    flat = [a for r in rounds[:4] for a in r]
    started = time.perf_counter()
    for attempt in flat:
        single.observe([attempt])
    single_rate = len(flat) / (time.perf_counter() - started)
    explaining = ModelTracer(loaded, CPU, explain_top_k=5)
    for attempts in rounds[:10]:
        explaining.observe(attempts[:32])
    started = time.perf_counter()
    for learner in learners[:32]:
        explaining.explain(learner.learner_id, vocabulary[int(learner.skills[9])])
    explain_ms = (time.perf_counter() - started) * 1000 / 32
    return {
        "batched_predictions_per_s": batched_rate,
        "single_predictions_per_s": single_rate,
        "batch_learners": float(len(learners)),
        "explain_ms": explain_ms,
    }


def _run(settings: Settings, job: Job, args: argparse.Namespace) -> dict[str, Any]:
    window = 200
    print(f"\n== {job.model} on {job.dataset}, seed {job.seed}, <= {job.epochs} epochs", flush=True)
    started = time.perf_counter()
    outcome = run_training(
        settings,
        DataChoice(job.dataset, max_learners=args.max_learners),
        ModelConfig(
            kind=job.model,
            num_skills=1,
            embedding_dim=args.hidden,
            hidden_dim=args.hidden,
            num_heads=args.heads,
        ),
        TrainConfig(
            epochs=job.epochs,
            window_length=window,
            seed=job.seed,
            patience=args.patience,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
        ),
        device=CPU,
        register=False,
        on_epoch=_print_epoch,
    )
    row: dict[str, Any] = {
        "dataset": job.dataset,
        "model": job.model,
        "seed": job.seed,
        "epochs_run": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "train_answers": outcome.train_answers,
        "test_answers": outcome.test_answers,
        "scored_answers": outcome.model_report.overall.count,
        "model_scores": outcome.model_report.overall.to_dict(),
        "bkt_scores": outcome.bkt_report.overall.to_dict(),
        "model_auc_by_history": {k: v.auc for k, v in outcome.model_report.by_history.items()},
        "bkt_auc_by_history": {k: v.auc for k, v in outcome.bkt_report.by_history.items()},
        "validation_auc_by_epoch": [e.validation_auc for e in outcome.history],
        "calibration": calibration(
            outcome.test_predictions.outcomes, outcome.test_predictions.p_correct
        ),
        "seconds_per_epoch": float(np.mean([e.seconds for e in outcome.history])),
        "total_seconds": time.perf_counter() - started,
    }
    if job.dataset == "assistments2009_akt_pid" and job.seed == 0:
        row["leakage"] = _leaky_scores(settings, outcome, window, args.max_learners)
    if job.dataset == "assistments2009_dkvmn" and job.seed == 0 and args.serving:
        row["serving"] = _serving_rate(outcome, settings, window)
    print(
        f"  {job.model}: AUC {row['model_scores']['auc']:.4f}  "
        f"BKT AUC {row['bkt_scores']['auc']:.4f}  ({row['total_seconds']:.0f} s)",
        flush=True,
    )
    return row


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, model): AUC mean and sd over seeds, BKT AUC, target gap."""
    table: list[dict[str, Any]] = []
    keys = dict.fromkeys((r["dataset"], r["model"]) for r in results)
    for dataset, model in keys:
        runs = [r for r in results if (r["dataset"], r["model"]) == (dataset, model)]
        aucs = np.array([r["model_scores"]["auc"] for r in runs])
        target = TARGETS.get(dataset)
        table.append(
            {
                "dataset": dataset,
                "model": model,
                "seeds": len(runs),
                "scored": runs[0]["scored_answers"],
                "auc_mean": float(aucs.mean()),
                "auc_sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else float("nan"),
                "bkt_auc": float(np.mean([r["bkt_scores"]["auc"] for r in runs])),
                "epochs": float(np.mean([r["epochs_run"] for r in runs])),
                "target": target,
                "gap": None if target is None else float(aucs.mean()) - target,
                "published": PUBLISHED.get(dataset, ""),
            }
        )
    return table


def print_table(table: list[dict[str, Any]]) -> None:
    print(
        f"\n{'dataset':24s} {'model':9s} {'seeds':>5s} {'scored':>7s} {'AUC mean ± sd':>16s} "
        f"{'BKT AUC':>8s} {'epochs':>6s} {'target gap':>10s}  published"
    )
    for row in table:
        gap = "" if row["gap"] is None else f"{row['gap']:+.4f}"
        print(
            f"{row['dataset']:24s} {row['model']:9s} {row['seeds']:5d} {row['scored']:7d} "
            f"{row['auc_mean']:8.4f} ± {row['auc_sd']:.4f} {row['bkt_auc']:8.4f} "
            f"{row['epochs']:6.1f} {gap:>10s}  {row['published']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="most epochs (early stopping)")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="", help="comma-separated (default: all four)")
    parser.add_argument("--models", default="dkt_lstm,sakt,akt")
    parser.add_argument("--max-learners", type=int, default=None, help="subset (not comparable)")
    parser.add_argument("--threads", type=int, default=1, help="2 thrash when others run")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--heads", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64, help="windows per step")
    parser.add_argument("--serving", action="store_true", help="also time serving")
    parser.add_argument("--quick", action="store_true", help="1 epoch, three jobs (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            data_dir=Path(scratch), dataset_dir=get_settings().dataset_dir, log_json=False
        )
        for job in _jobs(args):
            results.append(_run(settings, job, args))
            # Written after every run: a long bench stopped early keeps what it measured.
            _write(args, results, time.perf_counter() - started_all)
    table = summarize(results)
    print_table(table)
    for row in results:
        if "leakage" in row:
            leak = row["leakage"]
            print(
                f"leakage {row['dataset']} {row['model']}: all rows scored -> model AUC "
                f"{leak['model_auc_all_rows']:.4f}, BKT {leak['bkt_auc_all_rows']:.4f}; "
                f"question-level -> model {row['model_scores']['auc']:.4f}, "
                f"BKT {row['bkt_scores']['auc']:.4f}"
            )
        if "serving" in row:
            serving = row["serving"]
            print(
                f"serving {row['model']}: batched {serving['batched_predictions_per_s']:.0f} "
                f"predictions/s ({serving['batch_learners']:.0f} learners per call), single "
                f"{serving['single_predictions_per_s']:.0f}/s, explanation "
                f"{serving['explain_ms']:.1f} ms"
            )
    total = time.perf_counter() - started_all
    print(f"total {total:.0f} s on {args.threads} torch threads; max learners {args.max_learners}")
    _write(args, results, total)


def _write(args: argparse.Namespace, results: list[dict[str, Any]], total: float) -> None:
    table = summarize(results)
    target = args.out or RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "processor": platform.processor(),
                "torch": torch.__version__,
                "threads": args.threads,
                "quick": args.quick,
                "max_learners": args.max_learners,
                "total_seconds": total,
                "table": table,
                "runs": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
