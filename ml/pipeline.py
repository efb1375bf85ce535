"""One training job end to end: data → train → evaluate next to BKT → MLflow → promotion.

Used by ``python -m ml train``, the benchmark and (later) the Airflow DAGs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from learnstream import lake
from learnstream.settings import Settings
from ml.datasets import (
    KTData,
    cut_windows,
    data_fingerprint,
    load_benchmark_split,
    load_lake,
    split_by_learner,
)
from ml.evaluate import EvaluationReport, fit_bkt, predict_bkt, predict_model, report
from ml.metrics import score
from ml.models import KnowledgeTracer, ModelConfig
from ml.registry import LoadedModel, ModelRegistry, PromotionDecision, save_model
from ml.train import EpochLog, TrainConfig, train
from scheduler.bkt import BKTParamArrays

log = logging.getLogger(__name__)

LAKE_DATASET = "lake"


@dataclass(frozen=True, slots=True)
class DataChoice:
    """Which data to train on: a shared benchmark name or ``lake`` (with a date range)."""

    dataset: str
    lake_start: date | None = None  # inclusive UTC event dates
    lake_end: date | None = None
    lake_tenants: tuple[str, ...] | None = None
    lake_test_fraction: float = 0.2  # learners held out when the lake is the source
    max_learners: int | None = None  # keep the first N learners of train and of test (quick runs)


@dataclass(slots=True)
class TrainingOutcome:
    """What a training job produced."""

    model_report: EvaluationReport
    bkt_report: EvaluationReport
    history: list[EpochLog]
    best_epoch: int
    fingerprint: str
    train_answers: int
    test_answers: int
    model: KnowledgeTracer
    skill_vocabulary: tuple[str, ...]
    bkt_params: BKTParamArrays
    run_id: str | None = None
    version: str | None = None
    decision: PromotionDecision | None = None


def load_split(settings: Settings, choice: DataChoice, seed: int) -> tuple[KTData, KTData]:
    """Train and test data with no learner in both."""
    if choice.dataset == LAKE_DATASET:
        data = load_lake(
            lake.default_root(settings),
            start_date=choice.lake_start,
            end_date=choice.lake_end,
            tenant_ids=choice.lake_tenants,
        )
        train_data, test_data = split_by_learner(
            data, choice.lake_test_fraction, np.random.default_rng(seed)
        )
    else:
        train_data, test_data = load_benchmark_split(choice.dataset, settings.dataset_dir)
    if choice.max_learners is not None:
        n = choice.max_learners
        train_data = KTData(
            train_data.name,
            train_data.sequences[:n],
            train_data.skill_vocabulary,
            train_data.sources,
        )
        test_data = KTData(
            test_data.name, test_data.sequences[:n], test_data.skill_vocabulary, test_data.sources
        )
    return train_data, test_data


def checkpoint_folder(
    settings: Settings, choice: DataChoice, model_config: ModelConfig, config: TrainConfig
) -> Path:
    """``<data_dir>/ml/checkpoints/<dataset>-<model>-<settings hash>``: same job, same folder."""
    identity = json.dumps(
        [
            choice.dataset,
            str(choice.lake_start),
            str(choice.lake_end),
            choice.lake_tenants,
            choice.max_learners,
            model_config.to_dict(),
            {k: v for k, v in config.to_dict().items() if k != "epochs"},
        ],
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return (
        settings.data_dir / "ml" / "checkpoints" / f"{choice.dataset}-{model_config.kind}-{digest}"
    )


def run_training(
    settings: Settings,
    choice: DataChoice,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    device: torch.device,
    validation_fraction: float = 0.1,
    register: bool = True,
    bkt_restarts: int = 3,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainingOutcome:
    """Train ``model_config`` (``num_skills`` is set from the data), evaluate, log, register.

    ``validation_fraction`` of the training learners pick the best epoch; the test
    learners are only used for the final scores and promotion.
    """
    train_data, test_data = load_split(settings, choice, config.seed)
    fit_data, validation_data = (
        split_by_learner(train_data, validation_fraction, np.random.default_rng(config.seed))
        if validation_fraction > 0
        else (train_data, None)
    )
    model_config = ModelConfig(
        **{
            **model_config.to_dict(),
            "num_skills": train_data.num_skills,
            "max_length": config.window_length,
        }
    )
    fit_windows = cut_windows(fit_data.sequences, config.window_length)
    validation_windows = (
        cut_windows(validation_data.sequences, config.window_length) if validation_data else []
    )
    test_windows = cut_windows(test_data.sequences, config.window_length)
    fingerprint = data_fingerprint(test_data, config.window_length)

    result = train(
        fit_windows,
        validation_windows,
        model_config,
        config,
        device=device,
        checkpoint_dir=checkpoint_folder(settings, choice, model_config, config),
        on_epoch=on_epoch,
    )
    model_report = report(predict_model(result.model, test_windows, device=device))
    bkt_params = fit_bkt(
        fit_windows,
        train_data.num_skills,
        np.random.default_rng(config.seed),
        restarts=bkt_restarts,
    )
    bkt_report = report(predict_bkt(test_windows, bkt_params))
    outcome = TrainingOutcome(
        model_report,
        bkt_report,
        result.history,
        result.best_epoch,
        fingerprint,
        train_data.num_answers,
        test_data.num_answers,
        result.model,
        train_data.skill_vocabulary,
        bkt_params,
    )
    if not register:
        return outcome

    registry = ModelRegistry(settings)
    with tempfile.TemporaryDirectory() as scratch:
        model_folder = Path(scratch) / "model"
        save_model(result.model, train_data.skill_vocabulary, config.window_length, model_folder)
        outcome.run_id = registry.log_training_run(
            experiment=f"kt-{choice.dataset}",
            run_name=f"{model_config.kind}-{choice.dataset}",
            params={
                "dataset": choice.dataset,
                **{f"model_{k}": v for k, v in model_config.to_dict().items()},
                **{f"train_{k}": v for k, v in config.to_dict().items()},
                "validation_fraction": validation_fraction,
                "best_epoch": result.best_epoch,
            },
            metrics={
                **model_report.flat_metrics("test"),
                **bkt_report.flat_metrics("bkt_test"),
            },
            epoch_metrics=[
                {
                    k: v
                    for k, v in {
                        "train_loss": e.train_loss,
                        "train_auc": e.train_auc,
                        "validation_auc": e.validation_auc,
                        "epoch_seconds": e.seconds,
                    }.items()
                    if np.isfinite(v)
                }
                for e in result.history
            ],
            snapshot={
                "train": train_data.sources,
                "test": test_data.sources,
            },
            fingerprint=fingerprint,
            model_folder=model_folder,
        )
    name = settings.ml_model_name
    outcome.version = registry.register(
        name, outcome.run_id, auc=model_report.overall.auc, fingerprint=fingerprint
    )

    def rescore(champion: LoadedModel) -> float | None:
        # A champion with another skill vocabulary cannot read this data: not comparable.
        if champion.skill_vocabulary != train_data.skill_vocabulary:
            return None
        predicted = predict_model(champion.model, test_windows, device=device)
        return score(predicted.outcomes, predicted.p_correct).auc

    outcome.decision = registry.promote(
        name, outcome.version, rescore_champion=rescore, device=device
    )
    return outcome
