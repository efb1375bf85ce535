"""MLflow tracking and model registry, local by default (no server).

* Store: ``settings.mlflow_tracking_uri``, or ``sqlite:///<data_dir>/mlflow.db`` with
  artifacts under ``<data_dir>/mlflow-artifacts``.
* Every training run logs its parameters, per-epoch and final metrics, the data
  snapshot it used (``data_snapshot.json``: files or lake partitions and their row
  counts, plus the evaluation-set fingerprint) and the model (``model/``: a
  ``model.pt`` loadable with ``torch.load(weights_only=True)`` and a readable
  ``model.json``).
* Promotion: a new version gets alias ``champion`` only if its evaluation AUC beats the
  champion's on the same evaluation set (same fingerprint) by
  ``settings.ml_promotion_min_auc_gain``; otherwise alias ``challenger``. When the
  champion was scored on another set, a caller-supplied function re-scores it on the
  candidate's set; without one the candidate stays challenger.
* Rollback: the registered model's tag ``champion_history`` lists earlier champions;
  :meth:`ModelRegistry.rollback` gives ``champion`` back to the latest of them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from learnstream.settings import Settings
from ml.datasets import SourcePart
from ml.exceptions import RegistryError
from ml.models import KnowledgeTracer, ModelConfig, build_model

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
HISTORY_TAG = "champion_history"
AUC_TAG = "eval_auc"
FINGERPRINT_TAG = "eval_fingerprint"


def tracking_uri(settings: Settings) -> str:
    """Where runs and the registry live (a local SQLite file unless configured)."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{settings.data_dir / 'mlflow.db'}"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready for inference, with what it needs to read learners' answers."""

    model: KnowledgeTracer
    skill_vocabulary: tuple[str, ...]
    window_length: int
    label: str  # e.g. "dkt@3" (registered name and version) or a folder name
    item_vocabulary: tuple[str, ...] = ()  # item index i + 1 is item_vocabulary[i]


def save_model(
    model: KnowledgeTracer,
    skill_vocabulary: Sequence[str],
    window_length: int,
    folder: Path,
    item_vocabulary: Sequence[str] = (),
) -> None:
    """Write ``model.pt`` (weights, config, vocabularies) and ``model.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    description = {
        "model_config": model.config.to_dict(),
        "skill_vocabulary": list(skill_vocabulary),
        "window_length": window_length,
        "item_vocabulary": list(item_vocabulary),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({**description, "model_state": state}, folder / "model.pt")
    (folder / "model.json").write_text(json.dumps(description, indent=1))


def load_model(folder: Path, device: torch.device, label: str = "") -> LoadedModel:
    """Read a folder written by :func:`save_model`; the model is in eval mode on ``device``."""
    saved = torch.load(folder / "model.pt", map_location=device, weights_only=True)
    model = build_model(ModelConfig.from_dict(saved["model_config"]), device)
    model.load_state_dict(saved["model_state"])
    model.eval()
    return LoadedModel(
        model,
        tuple(saved["skill_vocabulary"]),
        int(saved["window_length"]),
        label or folder.name,
        tuple(saved.get("item_vocabulary", ())),
    )


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """What :meth:`ModelRegistry.promote` did and why."""

    version: str
    alias: str  # "champion" or "challenger"
    candidate_auc: float
    champion_version: str | None
    champion_auc: float | None
    reason: str


class ModelRegistry:
    """Runs, registered versions, aliases, promotion and rollback on one MLflow store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = tracking_uri(settings)
        self.local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
        if self.uri.startswith("sqlite:"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (with its artifact folder) if needed."""
        return self._experiment_id(name)

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        # A local store keeps artifacts beside it; a server decides for itself.
        location = (
            (self.settings.data_dir / "mlflow-artifacts" / name).resolve().as_uri()
            if self.local
            else None
        )
        return str(self.client.create_experiment(name, artifact_location=location))

    def log_training_run(
        self,
        *,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        epoch_metrics: Sequence[Mapping[str, float]],
        snapshot: Mapping[str, Sequence[SourcePart]],
        fingerprint: str,
        model_folder: Path,
        excluded: Mapping[str, Any] | None = None,
    ) -> str:
        """Record one training run; returns its run id.

        ``epoch_metrics[i]`` are logged at step ``i + 1``; ``snapshot`` maps a role
        (``train``, ``test``) to its sources and row counts. ``excluded`` (e.g. the privacy
        tombstones the data was purged of) is written into the snapshot artifact as is.
        """
        run = self.client.create_run(self._experiment_id(experiment), run_name=run_name)
        run_id = str(run.info.run_id)
        try:
            for key, value in params.items():
                self.client.log_param(run_id, key, value)
            for step, values in enumerate(epoch_metrics, start=1):
                for key, value in values.items():
                    self.client.log_metric(run_id, key, value, step=step)
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, value)
            self.client.set_tag(run_id, FINGERPRINT_TAG, fingerprint)
            for role, parts in snapshot.items():
                self.client.log_param(run_id, f"data_{role}_rows", sum(p.rows for p in parts))
            with tempfile.TemporaryDirectory() as scratch:
                snapshot_file = Path(scratch) / "data_snapshot.json"
                snapshot_file.write_text(
                    json.dumps(
                        {
                            "fingerprint": fingerprint,
                            **({"excluded": dict(excluded)} if excluded is not None else {}),
                            **{
                                role: [{"source": p.source, "rows": p.rows} for p in parts]
                                for role, parts in snapshot.items()
                            },
                        },
                        indent=1,
                    )
                )
                self.client.log_artifact(run_id, str(snapshot_file))
            self.client.log_artifacts(run_id, str(model_folder), artifact_path=MODEL_ARTIFACT)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def register(self, name: str, run_id: str, *, auc: float, fingerprint: str) -> str:
        """Register the run's model as a new version of ``name``; returns the version."""
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        run = self.client.get_run(run_id)
        version = self.client.create_model_version(
            name,
            f"{run.info.artifact_uri}/{MODEL_ARTIFACT}",
            run_id=run_id,
            tags={AUC_TAG: repr(auc), FINGERPRINT_TAG: fingerprint},
        )
        return str(version.version)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or ``None`` (also when ``name`` is unknown)."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def _history(self, name: str) -> list[str]:
        tags = self.client.get_registered_model(name).tags
        return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]

    def _crown(self, name: str, version: str) -> None:
        current = self.version_by_alias(name, CHAMPION)
        if current is not None and str(current.version) != version:
            history = [*self._history(name), str(current.version)]
            self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
        self.client.set_registered_model_alias(name, CHAMPION, version)
        challenger = self.version_by_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            self.client.delete_registered_model_alias(name, CHALLENGER)

    def promote(
        self,
        name: str,
        version: str,
        *,
        rescore_champion: Callable[[LoadedModel], float | None] | None = None,
        device: torch.device | None = None,
    ) -> PromotionDecision:
        """Give ``version`` the alias champion if it beats the champion, else challenger.

        ``rescore_champion`` returns the champion's AUC on the candidate's evaluation
        set (``None``: it cannot be scored there); it is called only when the champion
        was scored on a different set.
        """
        candidate = self.client.get_model_version(name, version)
        candidate_auc = float(candidate.tags[AUC_TAG])
        margin = self.settings.ml_promotion_min_auc_gain
        champion = self.version_by_alias(name, CHAMPION)
        if champion is None:
            self._crown(name, version)
            return PromotionDecision(
                version, CHAMPION, candidate_auc, None, None, "no champion yet"
            )
        champion_auc: float | None = None
        if champion.tags.get(FINGERPRINT_TAG) == candidate.tags[FINGERPRINT_TAG]:
            champion_auc = float(champion.tags[AUC_TAG])
        elif rescore_champion is not None:
            champion_auc = rescore_champion(
                self.load_version(name, str(champion.version), device or torch.device("cpu"))
            )
        if champion_auc is not None and candidate_auc >= champion_auc + margin:
            self._crown(name, version)
            reason = f"AUC {candidate_auc:.4f} >= champion {champion_auc:.4f} + {margin}"
            alias = CHAMPION
        else:
            self.client.set_registered_model_alias(name, CHALLENGER, version)
            reason = (
                "champion scored on another evaluation set; not compared"
                if champion_auc is None
                else f"AUC {candidate_auc:.4f} < champion {champion_auc:.4f} + {margin}"
            )
            alias = CHALLENGER
        log.info("model %s version %s -> %s (%s)", name, version, alias, reason)
        return PromotionDecision(
            version, alias, candidate_auc, str(champion.version), champion_auc, reason
        )

    def rollback(self, name: str) -> str:
        """Give champion back to the previous champion; returns its version.

        The demoted version keeps no alias and is not re-promoted by later rollbacks.
        Raises :class:`RegistryError` when there is no earlier champion.
        """
        history = self._history(name) if self.version_by_alias(name, CHAMPION) else []
        if not history:
            raise RegistryError(f"model {name!r} has no earlier champion to roll back to")
        previous = history.pop()
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
        log.info("model %s: champion rolled back to version %s", name, previous)
        return previous

    def load_version(self, name: str, version: str, device: torch.device) -> LoadedModel:
        """Download and load one registered version."""
        source = self.client.get_model_version(name, version).source
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=scratch, tracking_uri=self.uri
                )
            )
            return load_model(folder, device, label=f"{name}@{version}")

    def load_champion(self, name: str, device: torch.device) -> LoadedModel | None:
        """The champion of ``name`` ready for inference, or ``None`` when there is none."""
        champion = self.version_by_alias(name, CHAMPION)
        if champion is None:
            return None
        return self.load_version(name, str(champion.version), device)
