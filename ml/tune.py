"""Tracked hyper-parameter search: Optuna, pruned on validation AUC, every trial in MLflow.

``python -m ml tune --model dkt_lstm --dataset assistments2009_dkvmn --trials 20``
(or ``--train/--valid/--test`` files, as ``train`` takes them) samples a configuration
per trial, trains it epoch by epoch and reports the validation AUC after each epoch
to Optuna, whose median pruner stops trials that trail the others at the same epoch.
Only the validation learners (the validation file, else a seeded 10 % of train) are
read: the test file is never opened here.

Each trial is one MLflow run in experiment ``tune-<dataset>-<model>`` (parameters,
validation AUC per epoch, ``best_validation_auc``, tag ``trial_state``
COMPLETE/PRUNED). With ``--write`` the best configuration is written to
:data:`TUNED_FILE` (``ml/tuned.json``, committed), which is where
:class:`ml.jobs.dkt_retrain.RetrainOptions` takes its defaults from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from learnstream.settings import Settings
from ml.datasets import Window, cut_windows, split_by_learner
from ml.models import ModelConfig
from ml.pipeline import DataChoice, load_split
from ml.registry import ModelRegistry
from ml.train import EpochLog, TrainConfig, train
from ml.tuned import TUNED_FILE, TunedConfig, load_tuned, save_tuned

__all__ = ["TUNED_FILE", "TuneResult", "TunedConfig", "load_tuned", "sample", "save_tuned", "tune"]


def sample(trial: optuna.Trial, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One point of the search space: (model settings, train settings)."""
    model: dict[str, Any] = {"dropout": trial.suggest_float("dropout", 0.0, 0.4)}
    if kind == "dkt_lstm":
        model["embedding_dim"] = trial.suggest_categorical("embedding_dim", [32, 64, 100, 200])
        model["hidden_dim"] = trial.suggest_categorical("hidden_dim", [64, 100, 200, 300])
        model["num_layers"] = trial.suggest_int("num_layers", 1, 2)
    else:
        heads = trial.suggest_categorical("num_heads", [2, 4, 8])
        model["num_heads"] = heads
        model["embedding_dim"] = heads * trial.suggest_categorical("head_dim", [8, 16, 32])
        model["hidden_dim"] = trial.suggest_categorical("hidden_dim", [64, 128, 256])
        model["num_layers"] = trial.suggest_int("num_layers", 1, 2)
    train_settings = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
        "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-4, log=True),
    }
    return model, train_settings


@dataclass(slots=True)
class TuneResult:
    """The study and its best configuration."""

    study: optuna.Study
    best: TunedConfig
    experiment: str


@dataclass(slots=True)
class _Objective:
    """One trial: sample, train epoch by epoch (reporting to Optuna), log it to MLflow."""

    kind: str
    dataset: str
    num_skills: int
    num_items: int
    fit_windows: list[Window]
    validation_windows: list[Window]
    epochs: int
    window_length: int
    seed: int
    device: torch.device
    registry: ModelRegistry
    experiment_id: str

    def __call__(self, trial: optuna.Trial) -> float:
        model_settings, train_settings = sample(trial, self.kind)
        model_config = ModelConfig(
            kind=self.kind,
            num_skills=self.num_skills,
            num_items=self.num_items,
            max_length=self.window_length,
            **model_settings,
        )
        config = TrainConfig(
            epochs=self.epochs,
            window_length=self.window_length,
            seed=self.seed,
            patience=2,
            **train_settings,
        )
        client = self.registry.client
        run_id = str(
            client.create_run(self.experiment_id, run_name=f"trial-{trial.number}").info.run_id
        )
        for key, value in {**trial.params, "dataset": self.dataset, "model": self.kind}.items():
            client.log_param(run_id, key, value)
        history: list[EpochLog] = []

        def report_epoch(entry: EpochLog) -> None:
            history.append(entry)
            client.log_metric(run_id, "validation_auc", entry.validation_auc, step=entry.epoch)
            client.log_metric(run_id, "train_loss", entry.train_loss, step=entry.epoch)
            trial.report(entry.validation_auc, entry.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {entry.epoch}: {entry.validation_auc:.4f}")

        state = "COMPLETE"
        try:
            with tempfile.TemporaryDirectory() as scratch:
                train(
                    self.fit_windows,
                    self.validation_windows,
                    model_config,
                    config,
                    device=self.device,
                    checkpoint_dir=Path(scratch),
                    on_epoch=report_epoch,
                )
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        finally:
            best = max((e.validation_auc for e in history), default=float("nan"))
            if np.isfinite(best):
                client.log_metric(run_id, "best_validation_auc", best)
            client.set_tag(run_id, "trial_state", state)
            client.set_terminated(run_id, status="FINISHED")
        trial.set_user_attr("model", model_settings)
        trial.set_user_attr("train", train_settings)
        return best


def tune(
    settings: Settings,
    choice: DataChoice,
    kind: str,
    *,
    trials: int,
    epochs: int,
    device: torch.device,
    seed: int = 0,
    window_length: int = 200,
    validation_fraction: float = 0.1,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> TuneResult:
    """Run the study; every trial is logged to MLflow (see the module docstring)."""
    train_data, validation_data, _ = load_split(settings, choice, seed)
    fit_data = train_data
    if validation_data is None:
        fit_data, validation_data = split_by_learner(
            train_data, validation_fraction, np.random.default_rng(seed)
        )
    fit_windows = cut_windows(fit_data.sequences, window_length)
    validation_windows = cut_windows(validation_data.sequences, window_length)
    registry = ModelRegistry(settings)
    experiment = f"tune-{choice.label}-{kind}"
    objective = _Objective(
        kind=kind,
        dataset=choice.label,
        num_skills=train_data.num_skills,
        num_items=train_data.num_items,
        fit_windows=fit_windows,
        validation_windows=validation_windows,
        epochs=epochs,
        window_length=window_length,
        seed=seed,
        device=device,
        registry=registry,
        experiment_id=registry.experiment_id(experiment),
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    study.optimize(
        objective,
        n_trials=trials,
        callbacks=[(lambda _study, trial: on_trial(trial))] if on_trial else None,
    )
    best_trial = study.best_trial
    best = TunedConfig(
        dict(best_trial.user_attrs["model"]),
        dict(best_trial.user_attrs["train"]),
        {
            "experiment": experiment,
            "dataset": choice.label,
            "best_validation_auc": best_trial.value,
            "trial": best_trial.number,
            "trials": len(study.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "epochs": epochs,
            "max_learners": choice.max_learners,
        },
    )
    return TuneResult(study, best, experiment)
