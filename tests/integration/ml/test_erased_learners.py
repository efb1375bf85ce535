"""Lake upkeep and training keep erased learners out (finding H1).

The attack left an erased learner's raw attempts in the Parquet lake, because
compaction ignored ``privacy_tombstones``. Proves: ``lake_maintenance``'s purge
re-checks every tombstone over the whole lake (any day, not only the interval) and
rewrites what erasure missed, leaving other learners and tenants alone, and finds
nothing the second time; a DKT retrain's lake snapshot purges the tombstoned learners
before listing the data and records what it excluded (count, latest erasure, digest;
no erased id), and the MLflow data snapshot of the run carries that record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from learnstream import lake
from learnstream.settings import Settings
from ml.datasets import SourcePart
from ml.jobs import dkt_retrain, lake_maintenance
from ml.jobs.common import Interval
from ml.registry import ModelRegistry

TOPIC = "learnstream.attempts.v1"
DAY = datetime(2024, 5, 6, 9, tzinfo=UTC)
ERASED_AT = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture
def own(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


def write_lake(root: Path, rows: list[tuple[str, str, int]]) -> None:
    """(tenant, user, day offset) rows, one file per day and tenant."""
    attempts = [
        lake.LakeAttempt(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            user_id=user,
            occurred_at=DAY + timedelta(days=day, minutes=i),
            item_id="item-1",
            skill_ids=("fractions",),
            correct=True,
            kafka_partition=0,
            kafka_offset=i,
        )
        for i, (tenant, user, day) in enumerate(rows)
    ]
    lake.write_attempts(root, lake.attempts_table(attempts), topic=TOPIC, partition=0)


def lake_users(root: Path) -> list[tuple[str, str]]:
    table = lake.read_attempts(root, columns=["tenant_id", "user_id"])
    return sorted(zip(table["tenant_id"].to_pylist(), table["user_id"].to_pylist(), strict=True))


async def tombstone(pool: asyncpg.Pool, tenant_id: str, subject_id: str) -> None:
    await pool.execute(
        "INSERT INTO privacy_tombstones (tenant_id, subject_id, erased_at, requested_by) "
        "VALUES ($1, $2, $3, 'test')",
        tenant_id,
        subject_id,
        ERASED_AT,
    )


async def test_lake_maintenance_rechecks_tombstones(own: Settings, db_pool: asyncpg.Pool) -> None:
    root = lake.default_root(own)
    # Written after the erasure ran (a sink replay, an unreachable lake): days far apart.
    write_lake(root, [("acme", "gone", 0), ("acme", "stays", 0), ("globex", "gone", 0)])
    write_lake(root, [("acme", "gone", 200)])
    await tombstone(db_pool, "acme", "gone")

    purged = await asyncio.to_thread(lake_maintenance.purge_erased, own)

    assert purged["tombstones"] == 1
    assert purged["rows_removed"] == 2
    assert (purged["files_rewritten"], purged["files_removed"]) == (1, 1)
    assert lake_users(root) == [("acme", "stays"), ("globex", "gone")]
    again = await asyncio.to_thread(lake_maintenance.purge_erased, own)
    assert again["rows_removed"] == again["files_rewritten"] == 0


async def test_training_snapshot_records_excluded_tombstones(
    own: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    root = lake.default_root(own)
    write_lake(root, [("acme", "gone", 0), ("acme", "stays", 0), ("acme", "gone", 1)])
    await tombstone(db_pool, "acme", "gone")
    await tombstone(db_pool, "acme", "never-in-lake")
    interval = Interval(
        DAY.replace(hour=0) + timedelta(days=2), DAY.replace(hour=0) + timedelta(days=3)
    )
    options = dkt_retrain.RetrainOptions(lookback_days=5)

    summary = await asyncio.to_thread(dkt_retrain.snapshot_lake, own, interval, options)

    assert summary["rows"] == 1  # only "stays" is trained on
    snapshot = json.loads((dkt_retrain.run_folder(own, interval) / "snapshot.json").read_text())
    excluded = snapshot["excluded_tombstones"]
    assert excluded["tombstones"] == 2
    assert excluded["rows_removed"] == 2
    assert excluded["latest_erased_at"] == ERASED_AT.isoformat()
    expected = hashlib.sha256(b"acme/gone\nacme/never-in-lake").hexdigest()
    assert excluded["digest"] == expected
    assert "gone" not in json.dumps(snapshot)  # no erased id copied into the run's records
    assert lake_users(root) == [("acme", "stays")]

    # The MLflow data snapshot of the run carries the same record.
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"0")
    registry = ModelRegistry(own)
    run_id = await asyncio.to_thread(
        registry.log_training_run,
        experiment="kt-privacy-test",
        run_name="privacy",
        params={},
        metrics={},
        epoch_metrics=[],
        snapshot={"train": [SourcePart("2024-05-06/acme", 1)]},
        fingerprint="f",
        model_folder=model,
        excluded={"privacy_tombstones": excluded},
    )
    folder = await asyncio.to_thread(
        registry.client.download_artifacts, run_id, "data_snapshot.json", str(tmp_path)
    )
    logged = json.loads(await asyncio.to_thread(Path(folder).read_text))
    assert logged["excluded"]["privacy_tombstones"] == excluded
