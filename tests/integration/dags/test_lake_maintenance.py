"""The ``lake_maintenance`` DAG merges the small files of the settled day without
losing or adding a record, reports the interval's duplicates and late events, fails
on files whose schema is not the lake's, and changes nothing when run again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from learnstream import lake
from tests.integration.dags.conftest import LAKE_TOPIC

INTERVAL_END = datetime(2024, 3, 4, tzinfo=UTC)  # checks 2024-03-03
SETTLED_DAY = "2024-03-02"  # compacted (one day of delay)
CONF = {"compaction_delay_days": 1, "late_after_s": 24 * 3600, "fail_on_errors": True}


def day_files(root: Path, day: str) -> dict[str, str]:
    """Every lake file of a day: relative path -> content hash."""
    folder = root / lake.ATTEMPTS_TABLE / f"event_date={day}"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def day_records(root: Path, day: str) -> Counter[tuple[str, int, int, str]]:
    """(folder, Kafka partition, offset, event id) of every row of a day, with multiplicity."""
    records: Counter[tuple[str, int, int, str]] = Counter()
    for path in (root / lake.ATTEMPTS_TABLE / f"event_date={day}").rglob("*.parquet"):
        table = pq.read_table(path, columns=["kafka_partition", "kafka_offset", "event_id"])
        for row in table.to_pylist():
            key = (path.parent.name, row["kafka_partition"], row["kafka_offset"], row["event_id"])
            records[key] += 1
    return records


def inject_quality_problems(root: Path) -> tuple[int, int]:
    """Tenant ``qa`` on 2024-03-03: 10 attempts, 3 of them late, and 4 re-sent events.

    Returns (duplicate rows, late events).
    """
    moment = datetime(2024, 3, 3, 12, tzinfo=UTC)
    base = [
        lake.LakeAttempt(
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"qa/{i}")),
            tenant_id="qa",
            user_id=f"qa-{i % 3}",
            occurred_at=moment + timedelta(minutes=i),
            received_at=moment + timedelta(minutes=i, days=2 if i < 3 else 0, seconds=1),
            item_id=f"qa-item-{i % 4}",
            skill_ids=("qa-skill",),
            correct=i % 2 == 0,
            kafka_partition=0,
            kafka_offset=900_000 + i,
        )
        for i in range(10)
    ]
    lake.write_attempts(root, lake.attempts_table(base), topic=LAKE_TOPIC, partition=0)
    # The same events produced again by a retrying client: new Kafka records.
    resent = [
        dataclasses.replace(a, kafka_partition=1, kafka_offset=900_000 + i)
        for i, a in enumerate(base[5:9])
    ]
    lake.write_attempts(root, lake.attempts_table(resent), topic=LAKE_TOPIC, partition=1)
    return len(resent), 3


def parsed(path: str) -> tuple[str, int, int]:
    """(topic, partition, first offset) of a lake file path."""
    name = lake.parse_part_file_name(Path(path).name)
    assert name is not None
    return name


def test_lake_maintenance_compacts_checks_and_reports(
    run_dag, small_lake, project_settings
) -> None:
    root = small_lake.root
    duplicates, late = inject_quality_problems(root)
    files_before = day_files(root, SETTLED_DAY)
    records_before = day_records(root, SETTLED_DAY)
    checked_rows = lake.read_attempts(
        root,
        start_date=INTERVAL_END.date() - timedelta(days=1),
        end_date=INTERVAL_END.date() - timedelta(days=1),
    ).num_rows

    result = run_dag("lake_maintenance", INTERVAL_END, CONF)
    assert result.state == "success", result.task_states

    # Compaction: every (folder, topic partition) is now one file; the records are unchanged.
    files_after = day_files(root, SETTLED_DAY)
    groups_before = {(Path(p).parent, parsed(p)[:2]) for p in files_before}
    assert len(files_after) == len(groups_before) < len(files_before)
    assert day_records(root, SETTLED_DAY) == records_before
    for path in files_after:
        # Named after the smallest first offset of the files it replaced.
        folder = Path(path).parent
        topic, partition, offset = parsed(path)
        merged = [
            parsed(p)[2]
            for p in files_before
            if Path(p).parent == folder and parsed(p)[:2] == (topic, partition)
        ]
        assert offset == min(merged)

    report_dir = project_settings.data_dir / "reports" / "lake_quality" / "interval_end=2024-03-04"
    report = json.loads((report_dir / "report.json").read_text())
    quality = report["quality"]
    assert quality["rows"] == checked_rows
    assert quality["duplicate_rows"] == duplicates
    assert quality["duplicate_event_ids"] == duplicates
    assert quality["late_events"] == late
    assert quality["errors"] == []
    assert report["compaction"]["files_before"] == len(files_before)
    assert report["compaction"]["files_after"] == len(files_after)
    partitions = pq.read_table(report_dir / "partitions.parquet")
    assert sum(partitions["rows"].to_pylist()) == checked_rows

    again = run_dag("lake_maintenance", INTERVAL_END, CONF)
    assert again.state == "success", again.task_states
    assert day_files(root, SETTLED_DAY) == files_after


def test_lake_maintenance_fails_on_a_foreign_schema(run_dag, small_lake, project_settings) -> None:
    day = small_lake.root / lake.ATTEMPTS_TABLE / "event_date=2024-04-01"
    bad = day / "tenant_id=assist" / lake.part_file_name(LAKE_TOPIC, 0, 0)
    bad.parent.mkdir(parents=True)
    pq.write_table(pa.table({"event_id": ["x"], "points": [3]}), bad)
    try:
        result = run_dag("lake_maintenance", datetime(2024, 4, 2, tzinfo=UTC), CONF)
    finally:
        shutil.rmtree(day)
    assert result.state == "failed"
    assert result.task_states["check_quality"] == "failed"
    assert result.task_states["report"] == "upstream_failed"
    report = json.loads(
        (
            project_settings.data_dir
            / "reports"
            / "lake_quality"
            / "interval_end=2024-04-02"
            / "report.json"
        ).read_text()
    )
    assert report["quality"]["schema_errors"] == [str(bad.relative_to(small_lake.root))]
