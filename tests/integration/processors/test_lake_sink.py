"""The lake sink on the real broker: Parquet that DuckDB, pandas and pyarrow all read alike.

Real ASSISTments attempts (two tenants, event times across midnight, so two
``event_date`` folders each) go through ``python -m processors lake_sink``. Proves:
the lake holds every record once with its fields and Kafka provenance, read back
identically by pyarrow.dataset (learnstream.lake), pandas and DuckDB with hive
partitioning; files are named by Kafka partition and offset, one per partition, day
and tenant per batch, and no temporary file is left behind.

Then the kill -9 drill (two workers, kills, SIGTERM, tests/integration/processors/
scenarios.py) with small batches: the files' row set must equal that of an
uninterrupted run, every (partition, offset) exactly once.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from learnstream import lake
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.learners import AKT_FILE, ItemAttempt, read_item_attempts
from tests.integration.processors.scenarios import run_kill_scenario
from tests.integration.processors.support import (
    offsets_reached,
    produce,
    running_worker,
    wait_for,
    worker_env,
)

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
COLUMNS = "event_id, tenant_id, user_id, item_id, correct, score, event_date"


def expected_rows(specs: list[ItemAttempt]) -> list[Row]:
    return sorted(
        (s.event_id, s.tenant_id, s.user_id, s.item_id, s.correct, s.credit, s.occurred_at.date())
        for s in specs
    )


def pyarrow_rows(root: Path) -> list[Row]:
    table = lake.attempts_dataset(root).to_table(columns=COLUMNS.split(", "))
    return sorted(tuple(row.values()) for row in table.to_pylist())


def pandas_rows(root: Path) -> list[Row]:
    frame = pd.read_parquet(root / lake.ATTEMPTS_TABLE, engine="pyarrow")
    return sorted(
        (
            r.event_id,
            str(r.tenant_id),
            r.user_id,
            r.item_id,
            bool(r.correct),
            float(r.score),
            date.fromisoformat(str(r.event_date)),
        )
        for r in frame.itertuples()
    )


def duckdb_rows(root: Path) -> list[Row]:
    pattern = str(root / lake.ATTEMPTS_TABLE / "**" / "*.parquet")
    relation = duckdb.sql(
        f"SELECT {COLUMNS} FROM read_parquet('{pattern}', hive_partitioning = true)"
    )
    assert relation is not None
    result = relation.fetchall()
    return sorted(
        (*row[:6], row[6] if isinstance(row[6], date) else date.fromisoformat(str(row[6])))
        for row in result
    )


def provenance(root: Path) -> list[tuple[int, int]]:
    table = lake.attempts_dataset(root).to_table(columns=["kafka_partition", "kafka_offset"])
    return sorted(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))


async def test_sink_writes_parquet_every_reader_agrees_on(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(
        update={
            "processor_web_port": 0,
            "data_dir": tmp_path / "data",
            "lake_batch_max": 5000,
            "lake_batch_within_s": 1.0,
        }
    )
    specs = read_item_attempts(shared_data / AKT_FILE, learners=60, limit=3000)
    topic = settings.topic(Stream.ATTEMPTS)
    ends = produce(settings, topic, [(s.key(), s.value()) for s in specs])
    with running_worker("lake_sink", worker_env(settings), tmp_path / "sink.log") as worker:
        await wait_for(
            lambda: offsets_reached(db_pool, app_id(settings, "lake_sink"), topic, ends),
            what="all offsets stored",
            timeout_s=90,
            worker=worker,
        )

    root = lake.default_root(settings)
    expected = expected_rows(specs)
    assert pyarrow_rows(root) == expected
    assert pandas_rows(root) == expected
    assert duckdb_rows(root) == expected
    assert provenance(root) == sorted((p, o) for p, end in ends.items() for o in range(end))

    partitions = lake.list_partitions(root)
    assert {(p.event_date, p.tenant_id) for p in partitions} == {
        (d, t) for d in (date(2024, 3, 31), date(2024, 4, 1)) for t in ("tenant-fsrs", "tenant-sm2")
    }
    files = [root / f for p in partitions for f in p.files]
    assert not list(root.rglob(".*tmp*"))
    sizes = [f.stat().st_size for f in files]
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    log.info(
        "lake files: %d files, rows per file min/median/max %d/%d/%d, bytes per file %d..%d",
        len(files),
        min(rows),
        sorted(rows)[len(rows) // 2],
        max(rows),
        min(sizes),
        max(sizes),
    )
    # One batch per flush: files are per Kafka partition, day and tenant, not per record.
    assert len(files) <= 4 * settings.topic_partitions * 3


@pytest.mark.slow
async def test_killed_sink_workers_leave_each_record_in_one_file(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    # Small, frequent batches: many renames and commits for the kills to land between.
    settings = topics.model_copy(
        update={
            "processor_web_port": 0,
            "data_dir": tmp_path / "data",
            "lake_batch_max": 150,
            "lake_batch_within_s": 0.2,
        }
    )
    specs = read_item_attempts(shared_data / AKT_FILE, learners=100, limit=6000)
    run = await run_kill_scenario(
        "lake_sink",
        settings,
        db_pool,
        settings.topic(Stream.ATTEMPTS),
        [(s.key(), s.value()) for s in specs],
        tmp_path,
        chunk=150,
    )
    root = lake.default_root(settings)
    assert pyarrow_rows(root) == expected_rows(specs), f"seed {run.seed}"
    every_offset = sorted((p, o) for p, end in run.ends.items() for o in range(end))
    assert provenance(root) == every_offset, f"seed {run.seed}"
