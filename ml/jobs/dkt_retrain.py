"""DKT retraining from the lake in five steps (the five tasks of the ``dkt_retrain`` DAG).

1. :func:`snapshot_lake`: the lake purged of every erased learner first (the privacy
   tombstones, :func:`ml.jobs.lake_maintenance.purge_erased`), then the lake partitions
   of the lookback window and their row counts (``snapshot.json``): what the run trains
   on, logged with the model together with the tombstones it excluded (count, latest
   erasure, digest of the sorted ``tenant/id`` list; not the ids themselves, so the
   MLflow store never holds erased ids).
2. :func:`train_candidate`: :func:`ml.pipeline.run_training` without registering
   (it trains, scores the model and BKT on held-out learners); the candidate model
   (:func:`ml.registry.save_model`) and ``training.json`` go into the run's folder.
3. :func:`evaluate_candidate`: the *saved* candidate scored on the held-out learners
   (``evaluation.json``), next to BKT on the same answers.
4. :func:`compare_with_champion`: the champion's AUC on the same evaluation set
   (``comparison.json``): its recorded AUC when it was scored on the same set,
   otherwise re-scored there; ``None`` when its skill vocabulary cannot read the data.
5. :func:`register_candidate`: log the MLflow run (parameters, metrics, the snapshot,
   the model), register a version and let :meth:`ml.registry.ModelRegistry.promote`
   give it ``champion`` or ``challenger``.

Everything lives in ``<data_dir>/jobs/dkt_retrain/interval_end=...``. A re-run of an
interval reuses its own work: training resumes from its checkpoint (restarted when the
snapshot changed), and a finished MLflow run of the interval is found again by its
``airflow_interval`` parameter instead of registering a second version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learnstream import lake
from learnstream.privacy import all_tombstones
from learnstream.settings import Settings
from ml.datasets import SourcePart, Window, cut_windows
from ml.evaluate import predict_model, report
from ml.jobs.common import (
    JOBS_FOLDER,
    Interval,
    output_dir,
    with_connection,
    write_json_atomically,
)
from ml.metrics import score
from ml.models import ModelConfig
from ml.pipeline import LAKE_DATASET, DataChoice, checkpoint_folder, load_split, run_training
from ml.registry import (
    CHALLENGER,
    CHAMPION,
    FINGERPRINT_TAG,
    LoadedModel,
    ModelRegistry,
    save_model,
)
from ml.registry import load_model as load_saved_model
from ml.train import TrainConfig
from ml.tuned import tuned_values

log = logging.getLogger(__name__)

# The configuration chosen by `python -m ml tune --write` (ml/tuned.json), if any: the
# retrain's defaults. DAG params still override each field.
_TUNED = tuned_values("dkt_lstm")

JOB = "dkt_retrain"
EXPERIMENT = f"kt-{LAKE_DATASET}"
INTERVAL_PARAM = "airflow_interval"
CANDIDATE_FOLDER = "candidate"


@dataclass(frozen=True, slots=True)
class RetrainOptions:
    """What to train on and how; the defaults are a production-sized daily retrain."""

    lookback_days: float = 28.0  # lake days before the interval end
    min_rows: int = 1000  # fewer attempts in the window: the run is skipped
    model_kind: str = "dkt_lstm"  # a key of ml.models.MODELS
    epochs: int = 10
    batch_size: int = int(_TUNED.get("batch_size", 64))
    learning_rate: float = float(_TUNED.get("learning_rate", 1e-3))
    weight_decay: float = float(_TUNED.get("weight_decay", 0.0))
    patience: int = 3  # epochs without a better validation AUC before stopping
    window_length: int = 200  # answers per window
    embedding_dim: int = int(_TUNED.get("embedding_dim", 100))
    hidden_dim: int = int(_TUNED.get("hidden_dim", 100))
    num_layers: int = int(_TUNED.get("num_layers", 1))
    num_heads: int = int(_TUNED.get("num_heads", 5))
    dropout: float = float(_TUNED.get("dropout", 0.2))
    test_fraction: float = 0.2  # learners held out for evaluation and promotion
    validation_fraction: float = 0.1  # of the training learners, to pick the best epoch
    max_learners: int | None = None  # first N learners of train and of test (quick runs)
    bkt_restarts: int = 3
    seed: int = 0
    device: str = "cpu"  # torch device, e.g. "cpu" or "cuda"

    def choice(self, interval: Interval) -> DataChoice:
        """The lake window of this interval as an ``ml.pipeline`` data choice."""
        window = interval.lookback(self.lookback_days)
        return DataChoice(
            LAKE_DATASET,
            lake_start=window.first_date,
            lake_end=window.last_date,
            lake_test_fraction=self.test_fraction,
            max_learners=self.max_learners,
        )

    def model_config(self) -> ModelConfig:
        # num_skills and max_length are set from the data by run_training.
        return ModelConfig(
            kind=self.model_kind,
            num_skills=0,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
            max_length=self.window_length,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            window_length=self.window_length,
            seed=self.seed,
            patience=self.patience,
        )


def run_folder(settings: Settings, interval: Interval) -> Path:
    """This interval's working folder."""
    return output_dir(settings, JOBS_FOLDER, JOB, interval)


def _read(settings: Settings, interval: Interval, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((run_folder(settings, interval) / name).read_text())
    return payload


def snapshot_lake(
    settings: Settings, interval: Interval, options: RetrainOptions
) -> dict[str, Any]:
    """List the window's lake partitions with file and row counts; write ``snapshot.json``.

    Returns ``{"window", "partitions", "rows", "digest"}``; ``digest`` changes whenever a
    partition's files or row count change.
    """
    choice = options.choice(interval)
    excluded = exclude_erased(settings)
    partitions = lake.list_partitions(
        lake.default_root(settings), start_date=choice.lake_start, end_date=choice.lake_end
    )
    listed = [
        {
            "event_date": p.event_date.isoformat(),
            "tenant_id": p.tenant_id,
            "files": len(p.files),
            "rows": p.rows,
        }
        for p in partitions
    ]
    digest_source = json.dumps(
        [[p.event_date.isoformat(), p.tenant_id, p.files, p.rows] for p in partitions]
    )
    snapshot = {
        "window": interval.lookback(options.lookback_days).to_dict(),
        "partitions": listed,
        "rows": sum(p.rows for p in partitions),
        "digest": hashlib.sha256(digest_source.encode()).hexdigest()[:16],
        "excluded_tombstones": excluded,
    }
    write_json_atomically(snapshot, run_folder(settings, interval) / "snapshot.json")
    return {k: v for k, v in snapshot.items() if k != "partitions"} | {"partitions": len(listed)}


def exclude_erased(settings: Settings) -> dict[str, Any]:
    """Purge the lake of every tombstoned learner; what was excluded, for the snapshot.

    ``{"tombstones", "latest_erased_at", "digest", "rows_removed"}``: ``digest`` is the
    SHA-256 of the sorted ``tenant_id/subject_id`` lines, so an auditor can check a run
    against ``privacy_tombstones`` without this record repeating any erased id.
    """
    tombstones = with_connection(settings, all_tombstones)
    purged = lake.erase_learners(
        lake.default_root(settings),
        {t: [s for tt, s, _ in tombstones if tt == t] for t in {t for t, _, _ in tombstones}},
    )
    lines = "\n".join(f"{tenant_id}/{subject_id}" for tenant_id, subject_id, _ in tombstones)
    return {
        "tombstones": len(tombstones),
        "latest_erased_at": max((e.isoformat() for _, _, e in tombstones), default=None),
        "digest": hashlib.sha256(lines.encode()).hexdigest(),
        "rows_removed": purged.rows_removed,
    }


def train_candidate(
    settings: Settings, interval: Interval, options: RetrainOptions
) -> dict[str, Any]:
    """Train on the snapshot's window (:func:`ml.pipeline.run_training`, not registered).

    Resumes from this interval's checkpoint unless the snapshot changed since it was
    written. Writes the candidate model and ``training.json``; returns the test AUCs.
    """
    snapshot = _read(settings, interval, "snapshot.json")
    choice = options.choice(interval)
    model_config, train_config = options.model_config(), options.train_config()
    checkpoints = checkpoint_folder(settings, choice, model_config, train_config)
    marker = checkpoints / "snapshot_digest"
    if marker.exists() and marker.read_text() != snapshot["digest"]:
        log.info("lake changed since %s was written; training from scratch", checkpoints)
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    marker.write_text(snapshot["digest"])

    device = torch.device(options.device)
    outcome = run_training(
        settings,
        choice,
        model_config,
        train_config,
        device=device,
        validation_fraction=options.validation_fraction,
        register=False,
        bkt_restarts=options.bkt_restarts,
    )
    folder = run_folder(settings, interval)
    candidate = folder / CANDIDATE_FOLDER
    if candidate.exists():
        shutil.rmtree(candidate)
    save_model(outcome.model, outcome.skill_vocabulary, options.window_length, candidate)
    training = {
        "model_config": outcome.model.config.to_dict(),
        "train_config": train_config.to_dict(),
        "history": [asdict(entry) for entry in outcome.history],
        "best_epoch": outcome.best_epoch,
        "fingerprint": outcome.fingerprint,
        "train_answers": outcome.train_answers,
        "test_answers": outcome.test_answers,
        "metrics": outcome.model_report.flat_metrics("test"),
        "bkt_metrics": outcome.bkt_report.flat_metrics("bkt_test"),
    }
    write_json_atomically(training, folder / "training.json")
    return {
        "test_auc": outcome.model_report.overall.auc,
        "bkt_test_auc": outcome.bkt_report.overall.auc,
        "train_answers": outcome.train_answers,
        "test_answers": outcome.test_answers,
        "best_epoch": outcome.best_epoch,
    }


def _held_out(
    settings: Settings, interval: Interval, options: RetrainOptions, vocabulary: tuple[str, ...]
) -> list[Window]:
    # The same learner split as training: same window, same seed.
    _, _, test_data = load_split(settings, options.choice(interval), options.seed)
    if test_data.skill_vocabulary != vocabulary:
        raise ValueError("the held-out data's skill vocabulary differs from the candidate's")
    return cut_windows(test_data.sequences, options.window_length)


def _candidate(settings: Settings, interval: Interval, device: torch.device) -> LoadedModel:
    return load_saved_model(run_folder(settings, interval) / CANDIDATE_FOLDER, device, "candidate")


def evaluate_candidate(
    settings: Settings, interval: Interval, options: RetrainOptions
) -> dict[str, Any]:
    """Score the saved candidate on the held-out learners; write ``evaluation.json``.

    Metrics: AUC, accuracy, RMSE, log-loss overall and by history length, with BKT's
    on the same answers (from training). Returns the overall figures.
    """
    device = torch.device(options.device)
    candidate = _candidate(settings, interval, device)
    windows = _held_out(settings, interval, options, candidate.skill_vocabulary)
    evaluation = report(predict_model(candidate.model, windows, device=device))
    training = _read(settings, interval, "training.json")
    payload = {
        "fingerprint": training["fingerprint"],
        "metrics": evaluation.flat_metrics("test"),
        "bkt_metrics": training["bkt_metrics"],
    }
    write_json_atomically(payload, run_folder(settings, interval) / "evaluation.json")
    return {
        "auc": evaluation.overall.auc,
        "accuracy": evaluation.overall.accuracy,
        "rmse": evaluation.overall.rmse,
        "log_loss": evaluation.overall.log_loss,
        "answers": evaluation.overall.count,
        "bkt_auc": training["bkt_metrics"].get("bkt_test_auc"),
    }


def compare_with_champion(
    settings: Settings, interval: Interval, options: RetrainOptions
) -> dict[str, Any]:
    """The champion's AUC on the candidate's evaluation set; write ``comparison.json``.

    Returns ``{"champion_version", "champion_auc", "candidate_auc", "beats_champion"}``;
    ``champion_auc`` is ``None`` when there is no champion or it cannot read this data.
    """
    evaluation = _read(settings, interval, "evaluation.json")
    candidate_auc = float(evaluation["metrics"]["test_auc"])
    registry = ModelRegistry(settings)
    champion = registry.version_by_alias(settings.ml_model_name, CHAMPION)
    champion_version: str | None = None
    champion_auc: float | None = None
    if champion is not None:
        champion_version = str(champion.version)
        if champion.tags.get(FINGERPRINT_TAG) == evaluation["fingerprint"]:
            champion_auc = float(champion.tags["eval_auc"])
        else:
            device = torch.device(options.device)
            loaded = registry.load_version(settings.ml_model_name, champion_version, device)
            candidate = _candidate(settings, interval, device)
            if loaded.skill_vocabulary == candidate.skill_vocabulary:
                windows = _held_out(settings, interval, options, candidate.skill_vocabulary)
                predicted = predict_model(loaded.model, windows, device=device)
                champion_auc = score(predicted.outcomes, predicted.p_correct).auc
    margin = settings.ml_promotion_min_auc_gain
    comparison = {
        "champion_version": champion_version,
        "champion_auc": champion_auc if champion_auc is None or np.isfinite(champion_auc) else None,
        "candidate_auc": candidate_auc,
        "margin": margin,
        "beats_champion": champion is None
        or (champion_auc is not None and candidate_auc >= champion_auc + margin),
    }
    write_json_atomically(comparison, run_folder(settings, interval) / "comparison.json")
    return comparison


def _finished_run(registry: ModelRegistry, interval: Interval) -> str | None:
    experiment = registry.client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    runs = registry.client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"params.{INTERVAL_PARAM} = '{interval.partition}' and attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def _log_candidate_run(
    registry: ModelRegistry,
    folder: Path,
    interval: Interval,
    options: RetrainOptions,
    airflow_run_id: str,
    files: dict[str, dict[str, Any]],
) -> str:
    """Log the candidate's MLflow run from the task files (``snapshot``, ``training``, …)."""
    snapshot, training, evaluation = files["snapshot"], files["training"], files["evaluation"]
    parts = [
        SourcePart(f"{p['event_date']}/{p['tenant_id']}", int(p["rows"]))
        for p in snapshot["partitions"]
    ]
    return registry.log_training_run(
        experiment=EXPERIMENT,
        run_name=f"{options.model_kind}-{interval.partition}",
        params={
            "dataset": LAKE_DATASET,
            INTERVAL_PARAM: interval.partition,
            "airflow_run_id": airflow_run_id,
            "lake_window_start": snapshot["window"]["start"],
            "lake_window_end": snapshot["window"]["end"],
            "lake_snapshot_digest": snapshot["digest"],
            "excluded_tombstones": (snapshot.get("excluded_tombstones") or {}).get("tombstones", 0),
            **{f"model_{k}": v for k, v in training["model_config"].items()},
            **{f"train_{k}": v for k, v in training["train_config"].items()},
            "validation_fraction": options.validation_fraction,
            "test_fraction": options.test_fraction,
            "best_epoch": training["best_epoch"],
        },
        metrics={**evaluation["metrics"], **evaluation["bkt_metrics"]},
        epoch_metrics=[
            {
                key: float(entry[field])
                for key, field in (
                    ("train_loss", "train_loss"),
                    ("train_auc", "train_auc"),
                    ("validation_auc", "validation_auc"),
                    ("epoch_seconds", "seconds"),
                )
                if np.isfinite(entry[field])
            }
            for entry in training["history"]
        ],
        snapshot={"train": parts, "test": parts},
        fingerprint=evaluation["fingerprint"],
        model_folder=folder / CANDIDATE_FOLDER,
        excluded={"privacy_tombstones": snapshot.get("excluded_tombstones")},
    )


def register_candidate(
    settings: Settings, interval: Interval, options: RetrainOptions, airflow_run_id: str
) -> dict[str, Any]:
    """Log the MLflow run, register a version and promote it (champion or challenger).

    A finished run of this interval is reused with its version, so a re-run does not
    register twice. Returns ``{"run_id", "version", "alias", "reason"}``.
    """
    folder = run_folder(settings, interval)
    files = {
        part: _read(settings, interval, f"{part}.json")
        for part in ("snapshot", "training", "evaluation", "comparison")
    }
    evaluation, comparison = files["evaluation"], files["comparison"]
    registry = ModelRegistry(settings)
    name = settings.ml_model_name

    run_id = _finished_run(registry, interval)
    if run_id is None:
        run_id = _log_candidate_run(registry, folder, interval, options, airflow_run_id, files)
    versions = registry.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if versions:
        version = str(versions[0].version)
        # Search results may omit aliases; the version itself carries them.
        aliases = set(registry.client.get_model_version(name, version).aliases or [])
        if aliases & {CHAMPION, CHALLENGER}:
            alias = CHAMPION if CHAMPION in aliases else CHALLENGER
            return {
                "run_id": run_id,
                "version": version,
                "alias": alias,
                "reason": "already registered",
            }
    else:
        version = registry.register(
            name,
            run_id,
            auc=float(evaluation["metrics"]["test_auc"]),
            fingerprint=evaluation["fingerprint"],
        )

    def compared_auc(champion: LoadedModel) -> float | None:
        # The compare task scored this champion on the same set; another champion
        # (crowned meanwhile) was not compared, so the candidate stays challenger.
        if champion.label != f"{name}@{comparison['champion_version']}":
            return None
        auc = comparison["champion_auc"]
        return None if auc is None else float(auc)

    decision = registry.promote(
        name, version, rescore_champion=compared_auc, device=torch.device(options.device)
    )
    return {
        "run_id": run_id,
        "version": version,
        "alias": decision.alias,
        "reason": decision.reason,
    }


def run_interval(
    settings: Settings, interval: Interval, options: RetrainOptions, run_id: str
) -> dict[str, Any] | None:
    """The ``dkt_retrain`` DAG's five tasks in their order, in this process.

    For callers outside Airflow (``make demo`` trains its champion this way) that want
    exactly what a scheduled run does for ``interval``. Returns the register step's
    answer (``run_id``, ``version``, ``alias``, ``reason``), or None when the window
    holds fewer than ``options.min_rows`` attempts (the DAG skips the run then).
    """
    snapshot = snapshot_lake(settings, interval, options)
    if snapshot["rows"] < options.min_rows:
        log.info("%s attempts in the window, fewer than %s", snapshot["rows"], options.min_rows)
        return None
    train_candidate(settings, interval, options)
    evaluate_candidate(settings, interval, options)
    compare_with_champion(settings, interval, options)
    return register_candidate(settings, interval, options, run_id)
