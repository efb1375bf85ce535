"""Tracked tuning and the comparison report, on a tiny slice of a real 3-line file.

``python -m ml tune``: every trial is an MLflow run (local SQLite store) with its
parameters, validation AUC per epoch and state; ``--write`` stores the best
configuration where ``dkt_retrain`` reads its defaults. ``python -m ml report``
writes the table and figure and logs both to MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from learnstream.settings import get_settings
from ml import tuned as tuned_module
from ml.__main__ import main
from ml.registry import ModelRegistry
from ml.report import REPORT_EXPERIMENT
from ml.tuned import TunedConfig, load_tuned, save_tuned, tuned_values


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LEARNSTREAM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    get_settings.cache_clear()


def _slice(source: Path, target: Path, start: int, count: int) -> Path:
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    target.write_text("\n".join(lines[3 * start : 3 * (start + count)]) + "\n")
    return target


def test_every_trial_is_tracked_and_the_best_is_written(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = shared_data / "assistments2009_dkvmn" / "assist2009_updated_train.csv"
    train = _slice(source, tmp_path / "train.csv", 0, 20)
    valid = _slice(source, tmp_path / "valid.csv", 20, 10)
    test = _slice(source, tmp_path / "test.csv", 30, 5)
    tuned_file = tmp_path / "tuned.json"
    monkeypatch.setattr(tuned_module, "TUNED_FILE", tuned_file)
    code = main(
        ["tune", "--model", "dkt_lstm", "--train", str(train), "--valid", str(valid),
         "--test", str(test), "--trials", "3", "--epochs", "2", "--write"]
    )  # fmt: skip
    assert code == 0
    registry = ModelRegistry(get_settings())
    experiment = registry.client.get_experiment_by_name("tune-train-dkt_lstm")
    assert experiment is not None
    runs = registry.client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    for run in runs:
        assert run.data.tags["trial_state"] in {"COMPLETE", "PRUNED"}
        assert "learning_rate" in run.data.params
        assert "validation_auc" in run.data.metrics
    tuned = load_tuned("dkt_lstm", tuned_file)
    assert tuned is not None
    assert tuned.provenance["trials"] == 3
    assert set(tuned.train) == {"learning_rate", "batch_size", "weight_decay"}
    assert max(r.data.metrics.get("best_validation_auc", 0.0) for r in runs) == pytest.approx(
        tuned.provenance["best_validation_auc"]
    )


def test_tuned_file_keeps_other_models(tmp_path: Path) -> None:
    path = tmp_path / "tuned.json"
    save_tuned("akt", TunedConfig({"dropout": 0.1}, {"learning_rate": 1e-3}), path)
    save_tuned("dkt_lstm", TunedConfig({"dropout": 0.3}, {"learning_rate": 2e-3}), path)
    assert load_tuned("akt", path) == TunedConfig({"dropout": 0.1}, {"learning_rate": 1e-3})
    assert load_tuned("sakt", path) is None
    assert tuned_values("dkt_lstm", path) == {"dropout": 0.3, "learning_rate": 2e-3}


def _run(model: str, seed: int, auc: float) -> dict[str, object]:
    groups = ("history_lt10", "history_10_49", "history_50_199", "history_ge200")
    return {
        "dataset": "d",
        "model": model,
        "seed": seed,
        "scored_answers": 100,
        "model_scores": {"auc": auc},
        "bkt_scores": {"auc": 0.7},
        "model_auc_by_history": dict.fromkeys(groups, auc),
        "calibration": [{"mean_p": 0.3, "observed": 0.32, "count": 50.0}],
    }


def test_report_writes_table_and_figure_and_logs_them(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    runs = [_run("dkt_lstm", 0, 0.80), _run("dkt_lstm", 1, 0.82), _run("akt", 0, 0.83)]
    results.write_text(json.dumps({"max_learners": 50, "runs": runs}))
    predictions = tmp_path / "p.csv"
    predictions.write_text("learner,position,skill,item,outcome,p,scored\na,0,1,,1,0.7,1\n")
    out = tmp_path / "report"
    code = main(
        ["report", "--results", str(results), "--predictions", f"file={predictions}",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    text = (out / "report.md").read_text()
    assert "| d | dkt_lstm (50 learners) | 2 | 100 | 0.8100 ± 0.0141 |" in text
    assert (out / "report.png").stat().st_size > 0
    registry = ModelRegistry(get_settings())
    experiment = registry.client.get_experiment_by_name(REPORT_EXPERIMENT)
    assert experiment is not None
    (run,) = registry.client.search_runs([experiment.experiment_id])
    names = {a.path for a in registry.client.list_artifacts(run.info.run_id)}
    assert names == {"report.md", "report.png"}
