"""Knowledge tracing on the shared ASSISTments splits: DKT-LSTM (and SAKT) next to BKT.

Run: ``.venv/bin/python -m bench.ml_dkt [--quick] [--threads 1] [--epochs 15]``.
Prints a table and writes ``bench/results/ml_dkt.json``.

Every model is trained on the published train split (10 % of its learners held out to
pick the best epoch), then scored on the test learners; BKT (``scheduler.bkt.fit_em``)
is fitted on the same training windows and scored on exactly the same test answers.
Windows of 200 answers, as in the DKVMN/pyKT protocol. ``assistments2009_akt_pid``
holds the same answers as ``assistments2009_dkvmn`` plus problem ids: its row "all
rows" scores every row including the 2nd..kth copies of multi-skill questions (the
leaky protocol the DKVMN-split figures follow), "question-level" leaves them out.

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
from ml.metrics import score
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
}


@dataclass(frozen=True, slots=True)
class Job:
    dataset: str
    model: str
    epochs: int


def _jobs(epochs: int, quick: bool) -> list[Job]:
    if quick:
        return [
            Job("assistments2009_dkvmn", "dkt_lstm", 1),
            Job("assistments2009_dkvmn", "sakt", 1),
        ]
    return [
        Job("assistments2009_dkvmn", "dkt_lstm", epochs),
        Job("assistments2009_dkvmn", "sakt", max(1, epochs // 4)),
        Job("assistments2009_akt_pid", "dkt_lstm", max(1, epochs // 2)),
        Job("assistments2015_dkvmn", "dkt_lstm", max(1, epochs // 4)),
        Job("assistments2017_dktplus", "dkt_lstm", max(1, epochs // 6)),
    ]


def _print_epoch(entry: EpochLog) -> None:
    print(
        f"    epoch {entry.epoch:3d} loss {entry.train_loss:.4f} train AUC {entry.train_auc:.4f} "
        f"val AUC {entry.validation_auc:.4f} {entry.seconds:.1f} s",
        flush=True,
    )


def _leaky_scores(settings: Settings, outcome: TrainingOutcome, window: int) -> dict[str, float]:
    """Model and BKT AUC when every row is scored, copies of multi-skill questions included."""
    _, _, test = load_split(settings, DataChoice("assistments2009_akt_pid"), 0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="DKT epochs on ASSIST2009")
    parser.add_argument("--threads", type=int, default=1, help="2 thrash when others run")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 epoch, two jobs (smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    window = 200
    results: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            data_dir=Path(scratch), dataset_dir=get_settings().dataset_dir, log_json=False
        )
        for job in _jobs(args.epochs, args.quick):
            print(f"\n== {job.model} on {job.dataset}, {job.epochs} epochs", flush=True)
            started = time.perf_counter()
            outcome = run_training(
                settings,
                DataChoice(job.dataset),
                ModelConfig(
                    kind=job.model, num_skills=1, embedding_dim=args.hidden, hidden_dim=args.hidden
                ),
                TrainConfig(epochs=job.epochs, window_length=window),
                device=CPU,
                register=False,
                on_epoch=_print_epoch,
            )
            row: dict[str, Any] = {
                "dataset": job.dataset,
                "model": job.model,
                "epochs": job.epochs,
                "best_epoch": outcome.best_epoch,
                "train_answers": outcome.train_answers,
                "test_answers": outcome.test_answers,
                "scored_answers": outcome.model_report.overall.count,
                "model_scores": outcome.model_report.overall.to_dict(),
                "bkt_scores": outcome.bkt_report.overall.to_dict(),
                "model_auc_by_history": {
                    k: v.auc for k, v in outcome.model_report.by_history.items()
                },
                "bkt_auc_by_history": {k: v.auc for k, v in outcome.bkt_report.by_history.items()},
                "seconds_per_epoch": float(np.mean([e.seconds for e in outcome.history])),
                "total_seconds": time.perf_counter() - started,
                "published": PUBLISHED.get(job.dataset, ""),
            }
            if job.dataset == "assistments2009_akt_pid":
                row["leakage"] = _leaky_scores(settings, outcome, window)
            if job.dataset == "assistments2009_dkvmn":
                row["serving"] = _serving_rate(outcome, settings, window)
            results.append(row)
            print(
                f"  {job.model}: AUC {row['model_scores']['auc']:.4f}  "
                f"BKT AUC {row['bkt_scores']['auc']:.4f}  ({row['total_seconds']:.0f} s)",
                flush=True,
            )

    print(
        f"\n{'dataset':26s} {'model':9s} {'ep':>3s} {'AUC':>7s} {'ACC':>6s} {'RMSE':>6s} "
        f"{'LL':>6s} {'BKT AUC':>8s} {'s/epoch':>8s}  published"
    )
    for row in results:
        m, b = row["model_scores"], row["bkt_scores"]
        print(
            f"{row['dataset']:26s} {row['model']:9s} {row['epochs']:3d} {m['auc']:7.4f} "
            f"{m['accuracy']:6.3f} {m['rmse']:6.3f} {m['log_loss']:6.3f} {b['auc']:8.4f} "
            f"{row['seconds_per_epoch']:8.1f}  {row['published']}"
        )
    for row in results:
        groups = "  ".join(
            f"{k}: {row['model_auc_by_history'][k]:.3f}/{row['bkt_auc_by_history'][k]:.3f}"
            for k in row["model_auc_by_history"]
        )
        print(f"by history (model/BKT AUC) {row['dataset']} {row['model']}: {groups}")
        if "leakage" in row:
            leak = row["leakage"]
            print(
                f"leakage {row['dataset']}: all rows scored -> model AUC "
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
    print(f"total {total:.0f} s on {args.threads} torch threads")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "processor": platform.processor(),
                "torch": torch.__version__,
                "threads": args.threads,
                "quick": args.quick,
                "total_seconds": total,
                "runs": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
