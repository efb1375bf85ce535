"""What every job shares: the data interval, where outputs go, lake reads, small writers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from learnstream import db, lake
from learnstream.settings import Settings

T = TypeVar("T")
Options = TypeVar("Options")

JOBS_FOLDER = "jobs"  # hand-offs between the tasks of one DAG run
REPORTS_FOLDER = "reports"  # tables for dashboards and people


@dataclass(frozen=True, slots=True)
class Interval:
    """A run's data interval ``[start, end)``, timezone-aware UTC.

    Airflow gives every run one (``data_interval_start``/``data_interval_end``); a job
    reads the data of its interval and writes the output partition named after it, so
    the same interval always means the same input and the same output location.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(
                f"empty data interval [{self.start}, {self.end}): schedule the DAG with a "
                "data-interval timetable (CronDataIntervalTimetable)"
            )

    @classmethod
    def of(cls, start: datetime | None, end: datetime | None) -> Interval:
        """From Airflow's ``data_interval_start``/``end`` (pendulum); plain UTC datetimes."""
        if start is None or end is None:
            raise ValueError("the run has no data interval (an asset-triggered run?)")
        return cls(_plain_utc(start), _plain_utc(end))

    @property
    def first_date(self) -> date:
        """The UTC date of ``start`` (first lake ``event_date`` the interval touches)."""
        return self.start.date()

    @property
    def last_date(self) -> date:
        """The UTC date of the last instant before ``end`` (last ``event_date`` touched)."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def partition(self) -> str:
        """Output folder name: ``interval_end=2024-03-02`` (or ``...T063000Z`` off midnight)."""
        if self.end.timetz() == time(0, tzinfo=UTC):
            return f"interval_end={self.end.date().isoformat()}"
        return f"interval_end={self.end.strftime('%Y-%m-%dT%H%M%SZ')}"

    def lookback(self, days: float) -> Interval:
        """The ``days`` before this interval's end (the window a model is fitted on)."""
        if days <= 0:
            raise ValueError(f"lookback days must be > 0, got {days}")
        return Interval(self.end - timedelta(days=days), self.end)

    def shifted(self, days: float) -> Interval:
        """The same interval moved by ``days`` (negative: into the past)."""
        delta = timedelta(days=days)
        return Interval(self.start + delta, self.end + delta)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready bounds (ISO 8601, UTC)."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _plain_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("interval bounds must be timezone-aware")
    # pendulum.DateTime is a datetime subclass; rebuild a plain one so it pickles and
    # compares like any other.
    utc = moment.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
    )


def output_dir(settings: Settings, folder: str, name: str, interval: Interval) -> Path:
    """``<data_dir>/<folder>/<name>/interval_end=...``: one interval's output partition."""
    return settings.data_dir / folder / name / interval.partition


def read_interval_attempts(
    settings: Settings, interval: Interval, columns: Sequence[str] | None = None
) -> pa.Table:
    """Lake attempts with ``start <= occurred_at < end``; an empty table when there are none.

    Partition pruning reads only the interval's ``event_date`` folders. Rows keep the
    lake's columns (partition keys included) and are not deduplicated.
    """
    wanted = list(columns) if columns is not None else None
    if wanted is not None and "occurred_at" not in wanted:
        wanted.append("occurred_at")
    try:
        table = lake.read_attempts(
            lake.default_root(settings),
            start_date=interval.first_date,
            end_date=interval.last_date,
            columns=wanted,
        )
    except lake.LakeError:
        return _empty_attempts(wanted)
    start = pa.scalar(interval.start, pa.timestamp("ms", tz="UTC"))
    end = pa.scalar(interval.end, pa.timestamp("ms", tz="UTC"))
    occurred = table["occurred_at"]
    return table.filter(
        pc.and_(pc.greater_equal(occurred, start), pc.less(occurred, end))
    ).combine_chunks()


def _empty_attempts(columns: Sequence[str] | None) -> pa.Table:
    every = [*lake.ATTEMPT_FILE_SCHEMA, *lake.PARTITION_SCHEMA]
    schema = pa.schema([f for f in every if columns is None or f.name in columns])
    return schema.empty_table()


def first_per_event(table: pa.Table) -> pa.Table:
    """One row per ``event_id`` (the lowest Kafka position): a record read twice counts once."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by(
        [("event_id", "ascending"), ("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
    )
    ids = ordered["event_id"].combine_chunks()
    keep = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    mask = pa.concat_arrays([pa.array([True]), keep.cast(pa.bool_())])
    return ordered.filter(mask)


def write_json_atomically(payload: Any, target: Path) -> None:
    """Write JSON to ``target`` via a temporary name and a rename (readers never see half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(temporary, "w") as sink:
        json.dump(payload, sink, indent=1, sort_keys=True, default=str)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(temporary, target)


def with_connection(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one PostgreSQL connection (the DAG tasks are synchronous)."""

    async def run() -> T:
        connection = await db.connect(settings)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def options_from_params(options_type: type[Options], params: Mapping[str, Any]) -> Options:
    """A job's options dataclass from Airflow params: its own fields only, others ignored."""
    if not is_dataclass(options_type):
        raise TypeError(f"{options_type.__name__} is not a dataclass")
    names = {f.name for f in fields(options_type)}
    return options_type(**{k: v for k, v in params.items() if k in names})
