"""MLflow registry on a temporary SQLite store: logging, promotion, no promotion, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from learnstream.settings import Settings
from ml.datasets import SourcePart
from ml.exceptions import RegistryError
from ml.models import ModelConfig, build_model
from ml.registry import CHALLENGER, CHAMPION, ModelRegistry, save_model, tracking_uri

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    # Creating a SQLite store runs MLflow's migrations (seconds): one per module,
    # and every test registers under its own model name.
    data_dir = tmp_path_factory.mktemp("mlflow")
    return ModelRegistry(Settings(data_dir=data_dir, ml_promotion_min_auc_gain=0.01))


@pytest.fixture
def registry(store: ModelRegistry) -> ModelRegistry:
    return store


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered-model name of this test's own."""
    return f"dkt-{request.node.name}"


def _log(
    registry: ModelRegistry, name: str, tmp_path: Path, auc: float, fingerprint: str = "set-a"
) -> str:
    torch.manual_seed(int(auc * 1000))
    model = build_model(ModelConfig(kind="dkt_lstm", num_skills=3, hidden_dim=4), CPU)
    folder = tmp_path / f"model-{auc}"
    save_model(model, ("a", "b", "c"), 20, folder)
    run_id = registry.log_training_run(
        experiment="kt-test",
        run_name="tiny",
        params={"model_kind": "dkt_lstm"},
        metrics={"test_auc": auc},
        epoch_metrics=[{"train_loss": 0.6}, {"train_loss": 0.5}],
        snapshot={"train": [SourcePart("x/train.csv", 10)], "test": [SourcePart("x/test.csv", 4)]},
        fingerprint=fingerprint,
        model_folder=folder,
    )
    return registry.register(name, run_id, auc=auc, fingerprint=fingerprint)


def _alias(registry: ModelRegistry, name: str, alias: str) -> str | None:
    version = registry.version_by_alias(name, alias)
    return None if version is None else str(version.version)


def test_default_store_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    assert tracking_uri(Settings(data_dir=tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking_uri(Settings(mlflow_tracking_uri="http://mlflow:5000")) == "http://mlflow:5000"


def test_a_run_logs_params_metrics_snapshot_and_model(
    registry: ModelRegistry, name: str, tmp_path: Path
) -> None:
    version = _log(registry, name, tmp_path, 0.70)
    model_version = registry.client.get_model_version(name, version)
    assert model_version.run_id is not None
    run = registry.client.get_run(model_version.run_id)
    assert run.data.params["model_kind"] == "dkt_lstm"
    assert run.data.params["data_test_rows"] == "4"
    assert run.data.metrics["test_auc"] == 0.70
    history = registry.client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.6), (2, 0.5)]
    snapshot = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{run.info.artifact_uri}/data_snapshot.json",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=registry.uri,
    )
    assert json.loads(Path(snapshot).read_text())["test"] == [{"source": "x/test.csv", "rows": 4}]
    loaded = registry.load_version(name, version, CPU)
    assert loaded.skill_vocabulary == ("a", "b", "c")
    assert loaded.window_length == 20


def test_promotion_needs_the_margin_on_the_same_set(
    registry: ModelRegistry, name: str, tmp_path: Path
) -> None:
    first = _log(registry, name, tmp_path, 0.70)
    assert registry.promote(name, first).alias == CHAMPION

    small_gain = _log(registry, name, tmp_path, 0.705)  # below the 0.01 margin
    decision = registry.promote(name, small_gain)
    assert (decision.alias, decision.champion_auc) == (CHALLENGER, 0.70)
    assert (_alias(registry, name, CHAMPION), _alias(registry, name, CHALLENGER)) == (
        first,
        small_gain,
    )

    other_set = _log(registry, name, tmp_path, 0.90, fingerprint="set-b")
    assert registry.promote(name, other_set).alias == CHALLENGER  # not comparable, no re-scoring
    rescored = registry.promote(name, other_set, rescore_champion=lambda champion: 0.80)
    assert rescored.alias == CHAMPION
    assert rescored.champion_auc == 0.80
    assert _alias(registry, name, CHAMPION) == other_set


def test_rollback_restores_the_previous_champion(
    registry: ModelRegistry, name: str, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError):
        registry.rollback(name)
    first = _log(registry, name, tmp_path, 0.70)
    registry.promote(name, first)
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(name)
    second = _log(registry, name, tmp_path, 0.75)
    third = _log(registry, name, tmp_path, 0.80)
    assert registry.promote(name, second).alias == CHAMPION
    assert registry.promote(name, third).alias == CHAMPION
    assert registry.rollback(name) == second
    assert _alias(registry, name, CHAMPION) == second
    assert registry.rollback(name) == first
    assert registry.load_champion(name, CPU) is not None
    with pytest.raises(RegistryError):
        registry.rollback(name)


def test_no_champion_loads_as_none(registry: ModelRegistry) -> None:
    assert registry.load_champion("nothing-registered", CPU) is None
