"""The ``dkt_retrain`` DAG trains a tiny model on the lake window, logs it with its data
snapshot, crowns the first version, registers nothing twice when an interval is run
again, decides the next interval's version by the champion comparison, and skips
training when the window has no data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from learnstream import lake
from ml.registry import CHAMPION, ModelRegistry

FIRST_END = datetime(2024, 3, 6, tzinfo=UTC)
TINY: dict[str, Any] = {
    "lookback_days": 10,
    "min_rows": 100,
    "epochs": 1,
    "batch_size": 32,
    "embedding_dim": 8,
    "hidden_dim": 8,
    "window_length": 50,
    "max_learners": 30,
    "bkt_restarts": 1,
}


def run_folder(settings, end: datetime) -> Any:
    return settings.data_dir / "jobs" / "dkt_retrain" / f"interval_end={end.date().isoformat()}"


def test_dkt_retrain_registers_and_promotes_once_per_interval(
    run_dag, small_lake, project_settings
) -> None:
    first = run_dag("dkt_retrain", FIRST_END, TINY)
    assert first.state == "success", first.task_states

    registry = ModelRegistry(project_settings)
    name = project_settings.ml_model_name
    versions = registry.client.search_model_versions(f"name='{name}'")
    assert len(versions) == 1
    champion = registry.version_by_alias(name, CHAMPION)
    assert champion is not None
    assert str(champion.version) == str(versions[0].version)

    folder = run_folder(project_settings, FIRST_END)
    snapshot = json.loads((folder / "snapshot.json").read_text())
    window_rows = sum(
        p.rows
        for p in lake.list_partitions(
            small_lake.root,
            start_date=(FIRST_END - timedelta(days=10)).date(),
            end_date=(FIRST_END - timedelta(days=1)).date(),
        )
    )
    assert snapshot["rows"] == window_rows
    assert champion.run_id is not None
    run = registry.client.get_run(champion.run_id)
    assert run.data.params["airflow_interval"] == "interval_end=2024-03-06"
    assert run.data.params["lake_snapshot_digest"] == snapshot["digest"]
    assert int(run.data.params["data_train_rows"]) == window_rows
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert 0.0 <= evaluation["metrics"]["test_auc"] <= 1.0
    assert run.data.metrics["test_auc"] == evaluation["metrics"]["test_auc"]

    again = run_dag("dkt_retrain", FIRST_END, TINY)
    assert again.state == "success", again.task_states
    assert len(registry.client.search_model_versions(f"name='{name}'")) == 1

    second_end = FIRST_END + timedelta(days=1)
    second = run_dag("dkt_retrain", second_end, TINY)
    assert second.state == "success", second.task_states
    versions = registry.client.search_model_versions(f"name='{name}'")
    assert len(versions) == 2
    newest = max(int(v.version) for v in versions)
    comparison = json.loads(
        (run_folder(project_settings, second_end) / "comparison.json").read_text()
    )
    assert comparison["champion_version"] == str(champion.version)
    crowned = registry.version_by_alias(name, CHAMPION)
    assert crowned is not None
    assert (str(crowned.version) == str(newest)) == comparison["beats_champion"]


def test_dkt_retrain_skips_an_empty_window(run_dag, small_lake, project_settings) -> None:
    result = run_dag("dkt_retrain", datetime(2025, 6, 1, tzinfo=UTC), TINY)
    assert result.state == "success", result.task_states
    assert result.task_states["snapshot"] == "success"
    assert result.task_states["train"] == "skipped"
    assert result.task_states["register"] == "skipped"
