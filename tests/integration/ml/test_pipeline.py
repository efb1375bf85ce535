"""The ML loop on real files: shared dataset → lake → train → MLflow registry → serving → rollback.

Proves that a lake written by ``learnstream.lake`` is what ``ml`` trains from, that a
training run records its lake partitions and is registered and promoted, that serving
loads the champion (and BKT when there is none), and that ``python -m ml rollback``
restores the previous champion. Tiny model, few learners, a local SQLite MLflow store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from learnstream import lake
from learnstream.settings import REPO_ROOT, Settings
from ml.datasets import build_lake_from_dataset
from ml.models import ModelConfig
from ml.pipeline import DataChoice, run_training
from ml.registry import CHAMPION, ModelRegistry
from ml.serving import AttemptInput, ModelTracer, load_tracer
from ml.sources import raw_benchmark_sequences
from ml.train import TrainConfig

CPU = torch.device("cpu")


def test_lake_to_served_champion_and_rollback(tmp_path: Path, shared_data: Path) -> None:
    settings = Settings(data_dir=tmp_path, dataset_dir=shared_data, ml_promotion_min_auc_gain=0.0)
    raw = raw_benchmark_sequences("assistments2009_akt_pid", shared_data)[:80]
    root = lake.default_root(settings)
    written = build_lake_from_dataset(
        raw,
        root,
        tenant_id="school-1",
        topic=settings.topic("attempts"),
        start=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert written == sum(p.rows for p in lake.list_partitions(root))

    model = ModelConfig(kind="dkt_lstm", num_skills=1, embedding_dim=16, hidden_dim=16)
    first = run_training(
        settings,
        DataChoice("lake"),
        model,
        TrainConfig(epochs=2, batch_size=16, window_length=50),
        device=CPU,
        bkt_restarts=1,
    )
    assert first.decision is not None
    assert first.decision.alias == CHAMPION
    assert 0.5 < first.model_report.overall.auc <= 1.0
    assert 0.0 < first.bkt_report.overall.auc <= 1.0
    assert first.model_report.overall.count == first.bkt_report.overall.count

    registry = ModelRegistry(settings)
    run = registry.client.get_run(first.run_id or "")
    # The snapshot names lake partitions and their rows; train + test rows = all attempts.
    assert int(run.data.params["data_train_rows"]) > 0
    assert run.data.params["dataset"] == "lake"
    assert "test_auc" in run.data.metrics
    assert "bkt_test_auc" in run.data.metrics

    second = run_training(
        settings,
        DataChoice("lake"),
        model,
        TrainConfig(epochs=3, batch_size=16, window_length=50, seed=1),
        device=CPU,
        bkt_restarts=1,
    )
    assert second.decision is not None
    # Another seed splits the lake's learners differently: another evaluation set, so
    # the champion was re-scored on the candidate's test learners before comparing.
    assert second.fingerprint != first.fingerprint
    assert second.decision.champion_auc is not None
    assert second.decision.champion_version == first.version

    tracer = load_tracer(settings, CPU, explain_top_k=2)
    assert isinstance(tracer, ModelTracer)
    skill = tracer.loaded.skill_vocabulary[0]
    results = tracer.observe([AttemptInput("school-1:new", (skill,), True)] * 3)
    assert len(results) == 3
    assert all(0.0 <= p <= 1.0 for p in results[-1].p_correct.values())
    assert results[-1].explanation

    environment = {**os.environ, "LEARNSTREAM_DATA_DIR": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "ml", "rollback", "--name", settings.ml_model_name],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    champion = registry.version_by_alias(settings.ml_model_name, CHAMPION)
    assert champion is not None
    assert str(champion.version) == first.version  # either rolled back, or never replaced
    if second.decision.alias == CHAMPION:
        assert completed.returncode == 0, completed.stderr
        assert f"champion is now version {first.version}" in completed.stdout
    else:
        assert completed.returncode == 1
        assert "no earlier champion" in completed.stderr
