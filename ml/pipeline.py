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
    Window,
    cut_windows,
    data_fingerprint,
    load_lake,
    split_by_learner,
)
from ml.evaluate import (
    EvaluationReport,
    Predictions,
    fit_bkt,
    predict_bkt,
    predict_model,
    report,
)
from ml.metrics import score
from ml.models import KnowledgeTracer, ModelConfig
from ml.registry import LoadedModel, ModelRegistry, PromotionDecision, save_model
from ml.sources import load_benchmark, load_file_split, read_skill_map
from ml.train import EpochLog, TrainConfig, train
from scheduler.bkt import BKTParamArrays
from scheduler.datasets import Format

log = logging.getLogger(__name__)

LAKE_DATASET = "lake"
FILES_DATASET = "files"


@dataclass(frozen=True, slots=True)
class DataChoice:
    """Which data to train on: a shared benchmark, ``lake`` (a date range) or ``files``.

    ``files``: ``train_files``/``test_files`` (and optionally ``valid_files``) in
    ``file_format``, skill ids optionally renamed by the ``skill_map`` csv; the split
    is the one the files give (nothing is re-split except validation learners drawn
    from train when no validation file is given).
    """

    dataset: str
    lake_start: date | None = None  # inclusive UTC event dates
    lake_end: date | None = None
    lake_tenants: tuple[str, ...] | None = None
    lake_test_fraction: float = 0.2  # learners held out when the lake is the source
    max_learners: int | None = None  # keep the first N learners of each part (quick runs)
    train_files: tuple[Path, ...] = ()
    valid_files: tuple[Path, ...] = ()
    test_files: tuple[Path, ...] = ()
    file_format: Format = "3line"
    skill_map: Path | None = None

    @property
    def label(self) -> str:
        """Short name for experiments and checkpoints (the train file's stem for files)."""
        if self.dataset == FILES_DATASET and self.train_files:
            return self.train_files[0].stem
        return self.dataset


@dataclass(slots=True)
class TrainingOutcome:
    """What a training job produced."""

    model_report: EvaluationReport
    bkt_report: EvaluationReport
    history: list[EpochLog]
    best_epoch: int
    test_predictions: Predictions
    fingerprint: str
    train_answers: int
    test_answers: int
    model: KnowledgeTracer
    skill_vocabulary: tuple[str, ...]
    bkt_params: BKTParamArrays
    run_id: str | None = None
    version: str | None = None
    decision: PromotionDecision | None = None


def load_split(
    settings: Settings, choice: DataChoice, seed: int
) -> tuple[KTData, KTData | None, KTData]:
    """Train, validation (``None``: draw it from train) and test, no learner in two parts."""
    validation: KTData | None = None
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
        if choice.dataset == FILES_DATASET:
            split = load_file_split(
                choice.train_files,
                choice.test_files,
                valid=choice.valid_files,
                fmt=choice.file_format,
                skill_map=read_skill_map(choice.skill_map) if choice.skill_map else None,
                name=choice.label,
            )
        else:
            split = load_benchmark(choice.dataset, settings.dataset_dir)
        train_data, validation, test_data = split.train, split.validation, split.test
    if choice.max_learners is not None:
        n = choice.max_learners
        train_data, test_data = train_data.head(n), test_data.head(n)
        validation = validation.head(n) if validation is not None else None
    return train_data, validation, test_data


def checkpoint_folder(
    settings: Settings, choice: DataChoice, model_config: ModelConfig, config: TrainConfig
) -> Path:
    """``<data_dir>/ml/checkpoints/<dataset>-<model>-<settings hash>``: same job, same folder."""
    identity = json.dumps(
        [
            choice.dataset,
            [str(p) for p in (*choice.train_files, *choice.valid_files, *choice.test_files)],
            choice.file_format,
            str(choice.skill_map),
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
    return settings.data_dir / "ml" / "checkpoints" / f"{choice.label}-{model_config.kind}-{digest}"


@dataclass(frozen=True, slots=True)
class _PreparedData:
    """The split cut into windows, and the model configuration sized to its vocabulary."""

    train_data: KTData  # fit + validation learners (the vocabulary's source)
    test_data: KTData
    fit_windows: list[Window]
    validation_windows: list[Window]
    test_windows: list[Window]
    model_config: ModelConfig
    fingerprint: str  # of the test windows


def _prepare_data(
    settings: Settings,
    choice: DataChoice,
    model_config: ModelConfig,
    config: TrainConfig,
    validation_fraction: float,
) -> _PreparedData:
    """Load the split, draw validation learners from train if needed, cut windows."""
    train_data, validation_data, test_data = load_split(settings, choice, config.seed)
    fit_data = train_data
    if validation_data is None and validation_fraction > 0:
        fit_data, validation_data = split_by_learner(
            train_data, validation_fraction, np.random.default_rng(config.seed)
        )
    sized_config = ModelConfig(
        **{
            **model_config.to_dict(),
            "num_skills": train_data.num_skills,
            "num_items": train_data.num_items,
            "max_length": config.window_length,
        }
    )
    fit_windows = cut_windows(fit_data.sequences, config.window_length)
    validation_windows = (
        cut_windows(validation_data.sequences, config.window_length) if validation_data else []
    )
    test_windows = cut_windows(test_data.sequences, config.window_length)
    fingerprint = data_fingerprint(test_data, config.window_length)
    return _PreparedData(
        train_data,
        test_data,
        fit_windows,
        validation_windows,
        test_windows,
        sized_config,
        fingerprint,
    )


def _epoch_metrics(history: list[EpochLog]) -> list[dict[str, float]]:
    """Per-epoch MLflow metrics, leaving out the non-finite ones (e.g. no validation)."""
    return [
        {
            k: v
            for k, v in {
                "train_loss": e.train_loss,
                "train_auc": e.train_auc,
                "validation_auc": e.validation_auc,
                "validation_loss": e.validation_loss,
                "epoch_seconds": e.seconds,
            }.items()
            if np.isfinite(v)
        }
        for e in history
    ]


def _log_run(
    registry: ModelRegistry,
    choice: DataChoice,
    data: _PreparedData,
    config: TrainConfig,
    validation_fraction: float,
    outcome: TrainingOutcome,
) -> str:
    """Log the training run (params, metrics, epochs, model folder) to MLflow; its run id."""
    with tempfile.TemporaryDirectory() as scratch:
        model_folder = Path(scratch) / "model"
        save_model(
            outcome.model,
            data.train_data.skill_vocabulary,
            config.window_length,
            model_folder,
            data.train_data.item_vocabulary,
        )
        return registry.log_training_run(
            experiment=f"kt-{choice.label}",
            run_name=f"{data.model_config.kind}-{choice.label}",
            params={
                "dataset": choice.label,
                **{f"model_{k}": v for k, v in data.model_config.to_dict().items()},
                **{f"train_{k}": v for k, v in config.to_dict().items()},
                "validation_fraction": validation_fraction,
                "best_epoch": outcome.best_epoch,
            },
            metrics={
                **outcome.model_report.flat_metrics("test"),
                **outcome.bkt_report.flat_metrics("bkt_test"),
            },
            epoch_metrics=_epoch_metrics(outcome.history),
            snapshot={
                "train": data.train_data.sources,
                "test": data.test_data.sources,
            },
            fingerprint=data.fingerprint,
            model_folder=model_folder,
        )


def _register_and_promote(
    settings: Settings,
    choice: DataChoice,
    data: _PreparedData,
    config: TrainConfig,
    validation_fraction: float,
    outcome: TrainingOutcome,
    device: torch.device,
) -> None:
    """Log the run, register a version and promote it; fills the outcome's registry fields."""
    registry = ModelRegistry(settings)
    outcome.run_id = _log_run(registry, choice, data, config, validation_fraction, outcome)
    name = settings.ml_model_name
    outcome.version = registry.register(
        name, outcome.run_id, auc=outcome.model_report.overall.auc, fingerprint=data.fingerprint
    )
    train_data = data.train_data

    def rescore(champion: LoadedModel) -> float | None:
        # A champion with another skill vocabulary cannot read this data: not comparable.
        if champion.skill_vocabulary != train_data.skill_vocabulary:
            return None
        if champion.model.config.num_items not in (1, train_data.num_items):
            return None
        predicted = predict_model(champion.model, data.test_windows, device=device)
        return score(predicted.outcomes, predicted.p_correct).auc

    outcome.decision = registry.promote(
        name, outcome.version, rescore_champion=rescore, device=device
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
    save_to: Path | None = None,
) -> TrainingOutcome:
    """Train ``model_config`` (vocabulary sizes are set from the data), evaluate, log, register.

    The validation learners (the validation files, else ``validation_fraction`` of the
    training learners) pick the best epoch and stop training early; the test learners
    are only used for the final scores and promotion. ``save_to`` also writes the
    model folder there (for ``python -m ml predict``).
    """
    data = _prepare_data(settings, choice, model_config, config, validation_fraction)
    train_data = data.train_data
    result = train(
        data.fit_windows,
        data.validation_windows,
        data.model_config,
        config,
        device=device,
        checkpoint_dir=checkpoint_folder(settings, choice, data.model_config, config),
        on_epoch=on_epoch,
    )
    test_predictions = predict_model(result.model, data.test_windows, device=device)
    model_report = report(test_predictions)
    if save_to is not None:
        save_model(
            result.model,
            train_data.skill_vocabulary,
            config.window_length,
            save_to,
            train_data.item_vocabulary,
        )
    bkt_params = fit_bkt(
        data.fit_windows,
        train_data.num_skills,
        np.random.default_rng(config.seed),
        restarts=bkt_restarts,
    )
    bkt_report = report(predict_bkt(data.test_windows, bkt_params))
    outcome = TrainingOutcome(
        model_report,
        bkt_report,
        result.history,
        result.best_epoch,
        test_predictions,
        data.fingerprint,
        train_data.num_answers,
        data.test_data.num_answers,
        result.model,
        train_data.skill_vocabulary,
        bkt_params,
    )
    if register:
        _register_and_promote(settings, choice, data, config, validation_fraction, outcome, device)
    return outcome
