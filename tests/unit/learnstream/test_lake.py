"""The Parquet lake: layout, atomic idempotent writes, readers (pyarrow, pandas, DuckDB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learnstream import lake

TOPIC = "learnstream.attempts.v1"
START = datetime(2024, 3, 1, 23, 0, tzinfo=UTC)


def _attempts(offsets: range, partition: int = 0) -> pa.Table:
    return lake.attempts_table(
        lake.LakeAttempt(
            event_id=f"e{offset}",
            tenant_id="acme" if offset % 3 else "school/7",
            user_id=f"u{offset % 4}",
            occurred_at=START + timedelta(minutes=20 * offset),  # crosses midnight UTC
            received_at=START + timedelta(minutes=20 * offset, seconds=1),
            item_id=f"item{offset % 5}",
            item_version=1,
            skill_ids=("fractions", "decimals") if offset % 2 else ("fractions",),
            correct=offset % 2 == 0,
            score=1.0 if offset % 2 == 0 else 0.0,
            response_time_ms=1500 + offset,
            hint_count=0,
            attempt_number=1,
            context="PRACTICE",
            kafka_partition=partition,
            kafka_offset=offset,
        )
        for offset in offsets
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_is_hive_partitioned_by_utc_date_and_tenant(tmp_path: Path) -> None:
    written = lake.write_attempts(
        tmp_path, _attempts(range(10, 16), partition=2), topic=TOPIC, partition=2
    )
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    part = "part-learnstream.attempts.v1-00002-00000000000000000010.parquet"
    assert names == [
        f"attempts/event_date=2024-03-02/tenant_id=acme/{part}",
        f"attempts/event_date=2024-03-02/tenant_id=school%2F7/{part}",
    ]
    stored = pq.read_table(written[0])
    assert "tenant_id" not in stored.column_names  # partition keys live in the path
    assert stored.schema.field("occurred_at").type == pa.timestamp("ms", tz="UTC")
    assert stored["kafka_offset"].to_pylist() == sorted(stored["kafka_offset"].to_pylist())


def test_writing_the_same_offsets_again_gives_the_same_files(tmp_path: Path) -> None:
    lake.write_attempts(tmp_path, _attempts(range(0, 8)), topic=TOPIC, partition=0)
    first = _files(tmp_path)
    lake.write_attempts(tmp_path, _attempts(range(0, 8)), topic=TOPIC, partition=0)
    assert _files(tmp_path) == first
    assert lake.read_attempts(tmp_path).num_rows == 8
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_a_replay_with_other_batch_boundaries_leaves_every_record_once(tmp_path: Path) -> None:
    # First run wrote offsets 0-3 and 4-9 but committed only up to 3 ...
    lake.write_attempts(tmp_path, _attempts(range(0, 4)), topic=TOPIC, partition=0)
    lake.write_attempts(tmp_path, _attempts(range(4, 10)), topic=TOPIC, partition=0)
    # ... a restarted sink replays from 4 in other batches.
    lake.write_attempts(tmp_path, _attempts(range(4, 7)), topic=TOPIC, partition=0)
    lake.write_attempts(tmp_path, _attempts(range(7, 10)), topic=TOPIC, partition=0)
    # A replay from 0 in one large batch supersedes all of them.
    lake.write_attempts(tmp_path, _attempts(range(0, 9)), topic=TOPIC, partition=0)
    lake.write_attempts(tmp_path, _attempts(range(9, 10)), topic=TOPIC, partition=0)
    offsets = sorted(lake.read_attempts(tmp_path)["kafka_offset"].to_pylist())
    assert offsets == list(range(10))
    # Another partition's files are never touched.
    lake.write_attempts(tmp_path, _attempts(range(5, 6), partition=1), topic=TOPIC, partition=1)
    assert lake.read_attempts(tmp_path).num_rows == 11


def test_rows_of_another_partition_are_refused(tmp_path: Path) -> None:
    with pytest.raises(lake.LakeError, match="partition 0"):
        lake.write_attempts(tmp_path, _attempts(range(3), partition=1), topic=TOPIC, partition=0)


def test_pyarrow_reader_filters_dates_and_tenants(tmp_path: Path) -> None:
    lake.write_attempts(tmp_path, _attempts(range(0, 12)), topic=TOPIC, partition=0)
    everything = lake.read_attempts(tmp_path)
    assert everything.num_rows == 12
    assert set(everything.column_names) >= {"event_date", "tenant_id", "skill_ids"}
    # Offsets 0-2 happen on 2024-03-01 (23:00, 23:20, 23:40 UTC), the rest on 03-02.
    first_day = lake.read_attempts(tmp_path, end_date=date(2024, 3, 1))
    assert sorted(first_day["kafka_offset"].to_pylist()) == [0, 1, 2]
    school = lake.read_attempts(tmp_path, start_date=date(2024, 3, 2), tenant_ids=["school/7"])
    assert sorted(school["kafka_offset"].to_pylist()) == [3, 6, 9]
    partitions = lake.list_partitions(tmp_path)
    assert sum(p.rows for p in partitions) == 12
    assert {(p.event_date, p.tenant_id) for p in partitions} == {
        (date(2024, 3, 1), "acme"),
        (date(2024, 3, 1), "school/7"),
        (date(2024, 3, 2), "acme"),
        (date(2024, 3, 2), "school/7"),
    }


def test_pandas_and_duckdb_read_the_lake(tmp_path: Path) -> None:
    written = lake.write_attempts(tmp_path, _attempts(range(0, 12)), topic=TOPIC, partition=0)
    frame = pq.read_table(written[0]).to_pandas()
    assert len(frame) == pq.ParquetFile(written[0]).metadata.num_rows
    assert str(frame["occurred_at"].dt.tz) == "UTC"
    pattern = f"{tmp_path}/attempts/**/*.parquet"
    relation = duckdb.sql(
        f"SELECT tenant_id, count(*) AS n, sum(len(skill_ids)) AS skills "
        f"FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY tenant_id ORDER BY 1"
    )
    assert relation is not None
    rows = relation.fetchall()
    # Offsets not divisible by 3 are acme (8 rows), 0/3/6/9 school/7; odd offsets have 2 skills.
    assert rows == [("acme", 8, 12), ("school/7", 4, 6)]
