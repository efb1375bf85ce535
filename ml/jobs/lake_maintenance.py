"""Lake upkeep: purge erased learners, compact small files, check data quality, report.

**Erasure re-check** (:func:`purge_erased`), first and over the whole lake, not only
the interval: every tombstone of ``privacy_tombstones`` is checked against every file
of its tenant, and a file still holding an erased learner is rewritten without them
(:func:`learnstream.lake.erase_learners`: atomic, read back). Erasure rewrites the
lake when it is requested; this catches what that missed (a lake root the API could
not reach, a crash between the database commit and the rewrite, a sink replay).

**Compaction** (:func:`compact_partitions`). The lake sink writes one file per
consumed batch, so a busy day ends with many small files. In each ``event_date`` /
``tenant_id`` folder, consecutive small files of one topic partition (consecutive in
first-offset order) are merged into one file named after the first of them, which
then holds the records of that topic partition from that offset on, exactly the
meaning :mod:`learnstream.lake` gives a file name. The merged file replaces the first
file atomically (:func:`learnstream.lake.write_table_atomically`), then the others are
removed. A record present twice (same Kafka partition and offset, left by an
interrupted write) is kept once; nothing else changes, so event-id duplicates stay
visible to the quality check. Running it again finds nothing to merge. A crash between
the rename and the removals leaves rows in two files until the next run merges them
again; readers that deduplicate by ``event_id`` (``ml.datasets``) are unaffected.

Compaction works on settled days only: the interval's days moved back by
``compaction_delay_days``, so the sink is long past those offsets (a replay of
uncommitted offsets into a folder being compacted could otherwise duplicate rows).

**Quality** (:func:`check_quality`) on the interval's own days: every file's schema
against :data:`learnstream.lake.ATTEMPT_FILE_SCHEMA`; nulls in required columns and
attempts without skills; duplicate ``event_id``; late events (``received_at`` more
than ``late_after_s`` after ``occurred_at``); events from the future (``occurred_at``
after ``received_at``); scores outside [0, 1] and negative response times.

**Report** (:func:`write_report`): ``<data_dir>/reports/lake_quality/interval_end=.../``
holds ``report.json`` (compaction, checks, problems) and ``partitions.parquet`` (files,
bytes and rows per partition, for dashboards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learnstream import lake
from learnstream.exceptions import LearnstreamError
from learnstream.privacy import all_tombstones
from learnstream.settings import Settings
from ml.jobs.common import (
    REPORTS_FOLDER,
    Interval,
    output_dir,
    with_connection,
    write_json_atomically,
)

log = logging.getLogger(__name__)

REPORT = "lake_quality"
# Columns an attempt cannot lack (the schema's non-nullable fields).
REQUIRED_COLUMNS = tuple(f.name for f in lake.ATTEMPT_FILE_SCHEMA if not f.nullable)


class DataQualityError(LearnstreamError):
    """The lake holds files or rows no reader can trust (wrong schema, missing values)."""


@dataclass(frozen=True, slots=True)
class MaintenanceOptions:
    """Thresholds of compaction and of the quality checks."""

    compaction_delay_days: int = 1  # compact the days this far before the interval
    small_file_bytes: int = 32 * 1024 * 1024  # files below this are merged
    max_merged_bytes: int = 256 * 1024 * 1024  # a merged file stays below this (input bytes)
    late_after_s: int = 24 * 3600  # received this long after it happened: late
    fail_on_errors: bool = True  # schema or required-value errors fail the check


def _dates(interval: Interval) -> list[date]:
    days = (interval.last_date - interval.first_date).days
    return [interval.first_date + timedelta(days=i) for i in range(days + 1)]


def _folders(root: Path, interval: Interval) -> list[Path]:
    # Every tenant folder of the interval's days, in path order.
    found: list[Path] = []
    for day in _dates(interval):
        day_dir = root / lake.ATTEMPTS_TABLE / f"event_date={day.isoformat()}"
        if day_dir.is_dir():
            found.extend(sorted(p for p in day_dir.glob("tenant_id=*") if p.is_dir()))
    return found


def _schema_matches(schema: pa.Schema) -> bool:
    expected = lake.ATTEMPT_FILE_SCHEMA
    return schema.names == expected.names and all(
        schema.field(f.name).type == f.type for f in expected
    )


def _runs(files: list[tuple[int, Path]], options: MaintenanceOptions) -> list[list[Path]]:
    """Runs of consecutive small files (by first offset) to merge, each of 2+ files."""
    runs: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for _, path in sorted(files):
        file_size = path.stat().st_size
        small = file_size < options.small_file_bytes
        if small and current and size + file_size <= options.max_merged_bytes:
            current.append(path)
            size += file_size
            continue
        if len(current) > 1:
            runs.append(current)
        current, size = ([path], file_size) if small else ([], 0)
    if len(current) > 1:
        runs.append(current)
    return runs


def _merge(run: list[Path]) -> tuple[int, int]:
    """Merge ``run`` into its first file; returns (rows before, rows after)."""
    tables = [pq.read_table(path) for path in run]
    merged = pa.concat_tables(tables).combine_chunks()
    before = merged.num_rows
    merged = merged.sort_by([("kafka_offset", "ascending")])
    offsets = merged["kafka_offset"].combine_chunks()
    if len(offsets) > 1:
        # One topic partition per run, so the offset identifies the record.
        repeated = pc.equal(offsets.slice(1), offsets.slice(0, len(offsets) - 1))
        merged = merged.filter(pa.concat_arrays([pa.array([True]), pc.invert(repeated)]))
    lake.write_table_atomically(merged.cast(lake.ATTEMPT_FILE_SCHEMA), run[0])
    for path in run[1:]:
        path.unlink(missing_ok=True)
    return before, merged.num_rows


def tombstones_by_tenant(settings: Settings) -> dict[str, list[str]]:
    """Every erased learner id, by tenant (read from ``privacy_tombstones``)."""
    erased: dict[str, list[str]] = {}
    for tenant_id, subject_id, _ in with_connection(settings, all_tombstones):
        erased.setdefault(tenant_id, []).append(subject_id)
    return erased


def purge_erased(settings: Settings) -> dict[str, Any]:
    """Remove every tombstoned learner's rows from the whole lake (see the module docstring).

    Returns ``{"tombstones", "files_scanned", "files_rewritten", "files_removed",
    "rows_removed"}``; all but the first are 0 when erasure already did its work.
    """
    erased = tombstones_by_tenant(settings)
    outcome = lake.erase_learners(lake.default_root(settings), erased)
    if outcome.rows_removed:
        log.warning(
            "lake still held %s rows of erased learners; rewrote %s files, removed %s",
            outcome.rows_removed,
            len(outcome.files_rewritten),
            len(outcome.files_removed),
        )
    return {
        "tombstones": sum(len(ids) for ids in erased.values()),
        "files_scanned": outcome.files_scanned,
        "files_rewritten": len(outcome.files_rewritten),
        "files_removed": len(outcome.files_removed),
        "rows_removed": outcome.rows_removed,
    }


def compact_partitions(
    settings: Settings, interval: Interval, options: MaintenanceOptions = MaintenanceOptions()
) -> dict[str, Any]:
    """Merge small files in the settled days (the interval moved back by the delay).

    Returns ``{"days", "folders", "files_before", "files_after", "merged_runs",
    "rows", "repeated_records_dropped", "skipped_files"}``; files whose schema is
    not the lake's are never merged and are counted in ``skipped_files``.
    """
    settled = interval.shifted(-options.compaction_delay_days)
    root = lake.default_root(settings)
    counts = dict.fromkeys(
        (
            "folders",
            "files_before",
            "files_after",
            "merged_runs",
            "rows",
            "repeated_records_dropped",
            "skipped_files",
        ),
        0,
    )
    for folder in _folders(root, settled):
        counts["folders"] += 1
        groups: dict[tuple[str, int], list[tuple[int, Path]]] = {}
        for path in sorted(folder.glob("*.parquet")):
            parsed = lake.parse_part_file_name(path.name)
            if parsed is None:
                continue
            counts["files_before"] += 1
            if not _schema_matches(pq.read_schema(path)):
                counts["skipped_files"] += 1
                continue
            topic, partition, offset = parsed
            groups.setdefault((topic, partition), []).append((offset, path))
        for files in groups.values():
            for run in _runs(files, options):
                before, after = _merge(run)
                counts["merged_runs"] += 1
                counts["repeated_records_dropped"] += before - after
        remaining = [p for p in folder.glob("*.parquet") if lake.parse_part_file_name(p.name)]
        counts["files_after"] += len(remaining)
        counts["rows"] += sum(pq.ParquetFile(p).metadata.num_rows for p in remaining)
    log.info("compaction %s: %s", settled.to_dict(), counts)
    return {"days": [d.isoformat() for d in _dates(settled)], **counts}


def _scan_partitions(
    root: Path, interval: Interval, options: MaintenanceOptions
) -> tuple[list[dict[str, Any]], list[str], list[Path]]:
    """(per-partition file/row counts, files whose schema differs, files with the right one).

    Reads only the Parquet footers; the paths in the schema errors are relative to ``root``.
    """
    partitions: list[dict[str, Any]] = []
    schema_errors: list[str] = []
    good_files: list[Path] = []
    for folder in _folders(root, interval):
        files = sorted(p for p in folder.glob("*.parquet") if lake.parse_part_file_name(p.name))
        sizes = [p.stat().st_size for p in files]
        rows = 0
        for path in files:
            metadata = pq.ParquetFile(path).metadata
            rows += metadata.num_rows
            if _schema_matches(metadata.schema.to_arrow_schema()):
                good_files.append(path)
            else:
                schema_errors.append(str(path.relative_to(root)))
        partitions.append(
            {
                "event_date": folder.parent.name.removeprefix("event_date="),
                "tenant_id": folder.name.removeprefix("tenant_id="),
                "files": len(files),
                "small_files": sum(s < options.small_file_bytes for s in sizes),
                "bytes": sum(sizes),
                "rows": rows,
            }
        )
    return partitions, schema_errors, good_files


def _row_checks(table: pa.Table, options: MaintenanceOptions) -> dict[str, Any]:
    """Counts of suspect rows, keyed as in the findings (``nulls`` is per required column)."""
    nulls = {name: table[name].null_count for name in REQUIRED_COLUMNS}
    no_skills = int(pc.sum(pc.equal(pc.list_value_length(table["skill_ids"]), 0)).as_py() or 0)
    counts = pc.value_counts(table["event_id"])
    repeats = pc.subtract(counts.field("counts"), 1)
    duplicate_ids = int(pc.sum(pc.greater(repeats, 0)).as_py() or 0)
    duplicate_rows = int(pc.sum(repeats).as_py() or 0)
    # received_at - occurred_at in ms; null where received_at is unknown.
    delay_ms = pc.subtract(
        pc.cast(table["received_at"], pa.int64()), pc.cast(table["occurred_at"], pa.int64())
    )
    late = int(pc.sum(pc.greater(delay_ms, options.late_after_s * 1000)).as_py() or 0)
    future = int(pc.sum(pc.less(delay_ms, 0)).as_py() or 0)
    bad_score = int(
        pc.sum(pc.or_(pc.less(table["score"], 0.0), pc.greater(table["score"], 1.0))).as_py() or 0
    )
    negative_time = int(pc.sum(pc.less(table["response_time_ms"], 0)).as_py() or 0)
    return {
        "nulls": nulls,
        "attempts_without_skills": no_skills,
        "duplicate_event_ids": duplicate_ids,
        "duplicate_rows": duplicate_rows,
        "late_events": late,
        "unknown_received_at": table["received_at"].null_count,
        "future_events": future,
        "scores_out_of_range": bad_score,
        "negative_response_times": negative_time,
    }


def _judge(
    schema_errors: list[str], checks: dict[str, Any], options: MaintenanceOptions
) -> tuple[list[str], list[str]]:
    """(errors, warnings) in words, from the schema errors and the row checks."""
    errors = [f"schema differs: {path}" for path in schema_errors]
    errors += [
        f"{count} nulls in required column {name}"
        for name, count in checks["nulls"].items()
        if count
    ]
    if no_skills := checks["attempts_without_skills"]:
        errors.append(f"{no_skills} attempts without skill ids")
    warnings = []
    if duplicate_rows := checks["duplicate_rows"]:
        warnings.append(
            f"{duplicate_rows} duplicate rows over {checks['duplicate_event_ids']} event ids"
        )
    if late := checks["late_events"]:
        warnings.append(f"{late} events received more than {options.late_after_s} s late")
    if future := checks["future_events"]:
        warnings.append(f"{future} events occurred after they were received")
    if bad_score := checks["scores_out_of_range"]:
        warnings.append(f"{bad_score} scores outside [0, 1]")
    if negative_time := checks["negative_response_times"]:
        warnings.append(f"{negative_time} negative response times")
    return errors, warnings


def check_quality(
    settings: Settings, interval: Interval, options: MaintenanceOptions = MaintenanceOptions()
) -> dict[str, Any]:
    """Check the files and rows of the interval's days; returns the findings.

    ``errors`` (wrong schema, nulls in required columns, attempts without skills) make
    the lake untrustworthy: with ``fail_on_errors`` the findings are written to the
    interval's report and :class:`DataQualityError` (naming them) fails the task.
    ``warnings`` (duplicates, late or future events, out-of-range values) are only
    reported.
    """
    root = lake.default_root(settings)
    partitions, schema_errors, good_files = _scan_partitions(root, interval, options)
    table = (
        pa.concat_tables([pq.read_table(p) for p in good_files]).combine_chunks()
        if good_files
        else lake.ATTEMPT_FILE_SCHEMA.empty_table()
    )
    checks = _row_checks(table, options)
    errors, warnings = _judge(schema_errors, checks, options)
    findings = {
        "interval": interval.to_dict(),
        "partitions": partitions,
        "files": sum(p["files"] for p in partitions),
        "rows": table.num_rows,
        "schema_errors": schema_errors,
        **checks,
        "errors": errors,
        "warnings": warnings,
    }
    if errors and options.fail_on_errors:
        write_report(settings, interval, None, findings)
        raise DataQualityError(f"lake quality {interval.partition}: " + "; ".join(errors))
    return findings


PARTITION_REPORT_SCHEMA = pa.schema(
    [
        ("event_date", pa.string()),
        ("tenant_id", pa.string()),
        ("files", pa.int64()),
        ("small_files", pa.int64()),
        ("bytes", pa.int64()),
        ("rows", pa.int64()),
    ]
)


def report_dir(settings: Settings, interval: Interval) -> Path:
    """Where the interval's quality report lives."""
    return output_dir(settings, REPORTS_FOLDER, REPORT, interval)


def write_report(
    settings: Settings,
    interval: Interval,
    compaction: dict[str, Any] | None,
    quality: dict[str, Any],
) -> dict[str, Any]:
    """Write ``report.json`` and ``partitions.parquet`` for the interval (replacing both).

    Returns ``{"path", "errors", "warnings"}``.
    """
    folder = report_dir(settings, interval)
    report = {"interval": interval.to_dict(), "compaction": compaction, "quality": quality}
    write_json_atomically(report, folder / "report.json")
    lake.write_table_atomically(
        pa.Table.from_pylist(quality["partitions"], schema=PARTITION_REPORT_SCHEMA),
        folder / "partitions.parquet",
    )
    return {
        "path": str(folder / "report.json"),
        "errors": len(quality["errors"]),
        "warnings": len(quality["warnings"]),
    }
