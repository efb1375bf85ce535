"""The Parquet lake: the one definition of its schema, layout, writer and readers.

The lake sink processor writes it; ``ml/`` and the DAGs read it; DuckDB, pandas and
pyarrow can read it directly.

Layout (hive partitioning, one folder per UTC day and tenant)::

    <root>/attempts/event_date=2024-03-01/tenant_id=acme/part-<topic>-<partition>-<offset>.parquet

* ``event_date`` is the UTC calendar date of ``occurred_at`` (``YYYY-MM-DD``);
  ``tenant_id`` is percent-encoded (``urllib.parse.quote``, so ``a/b`` becomes
  ``a%2Fb``; ordinary ids are unchanged). Both are partition keys: they live in the
  path only, not inside the files, as hive readers expect.
* A file name is ``part-<topic>-<partition, 5 digits>-<first offset, 20 digits>.parquet``:
  it depends only on the Kafka records written, never on the clock. The topic is
  kept as is except characters outside ``[A-Za-z0-9._-]``, which become ``_``.
* Files are written atomically: first under a hidden temporary name in the same
  folder (``.part-....tmp-<pid>``, which pyarrow's and DuckDB's ``*.parquet`` globs
  skip), then fsynced and renamed over the final name with :func:`os.replace`,
  then the folder is fsynced. A reader sees a whole file or none.
* Replays are idempotent: writing offsets ``[a, b]`` of one topic partition rewrites
  the file named after ``a`` and removes, in each folder it writes, the files of the
  same topic partition whose first offset lies in ``(a, b]`` (left by an earlier
  attempt whose offsets were not committed; the replay covers them again). That
  holds when each call covers one folder (one day and tenant), which is how the
  lake sink calls it (``processors/lake_sink.py`` names each file after that
  group's own first offset). A call spanning several folders, replayed with other
  batch boundaries, can leave a record twice: ``tests/unit/processors/test_lake_sink.py``
  shows the case.

Inside a file rows are ordered by ``kafka_offset``; columns follow
:data:`ATTEMPT_FILE_SCHEMA`. Timestamps are UTC milliseconds.

Erasure: :func:`erase_learners` rewrites every file holding an erased learner without
their rows (the same atomic write, then read back) and removes a file left empty;
:func:`learner_rows` finds a learner's rows for the privacy export.

Reading: :func:`attempts_dataset` gives a ``pyarrow.dataset.Dataset`` with the
partition keys as columns; :func:`read_attempts` filters by date range and tenants;
:func:`list_partitions` lists partitions with file and row counts (the data snapshot
a training run records). DuckDB: ``read_parquet('<root>/attempts/**/*.parquet',
hive_partitioning = true)``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from learnstream.exceptions import LearnstreamError
from learnstream.settings import Settings

ATTEMPTS_TABLE = "attempts"
_TS = pa.timestamp("ms", tz="UTC")

# Every column of an attempt row, partition keys included (what writers are given).
ATTEMPT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("occurred_at", _TS, nullable=False),
        pa.field("received_at", _TS),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("item_version", pa.int32()),
        pa.field("skill_ids", pa.list_(pa.string()), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("score", pa.float64()),  # partial credit in [0, 1]
        pa.field("response_time_ms", pa.int64()),
        pa.field("hint_count", pa.int32()),
        pa.field("attempt_number", pa.int32()),
        pa.field("context", pa.string()),  # AttemptContext enum name
        # Provenance: where the record was read from.
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ]
)
# Partition keys as readers see them (from the path).
PARTITION_SCHEMA = pa.schema([("event_date", pa.date32()), ("tenant_id", pa.string())])
# What a Parquet file holds: everything but the partition keys.
ATTEMPT_FILE_SCHEMA = pa.schema([f for f in ATTEMPT_SCHEMA if f.name != "tenant_id"])

_PART_NAME = re.compile(r"^part-(?P<topic>.+)-(?P<partition>\d{5})-(?P<offset>\d{20})\.parquet$")
_UNSAFE_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class LakeError(LearnstreamError):
    """A lake write was given rows it cannot place (wrong schema, mixed partitions)."""


@dataclass(frozen=True, slots=True)
class LakeAttempt:
    """One attempt row in Python form; times are timezone-aware UTC datetimes."""

    event_id: str
    tenant_id: str
    user_id: str
    occurred_at: datetime
    item_id: str
    skill_ids: tuple[str, ...]
    correct: bool
    kafka_partition: int
    kafka_offset: int
    received_at: datetime | None = None
    item_version: int | None = None
    score: float | None = None  # in [0, 1]
    response_time_ms: int | None = None
    hint_count: int | None = None
    attempt_number: int | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class LakePartition:
    """One ``event_date``/``tenant_id`` folder with its files and row count."""

    event_date: date
    tenant_id: str
    files: tuple[str, ...] = field(default_factory=tuple)  # paths relative to the lake root
    rows: int = 0


def default_root(settings: Settings) -> Path:
    """The lake's root folder for these settings: ``<data_dir>/lake``."""
    return settings.data_dir / "lake"


def attempts_table(attempts: Iterable[LakeAttempt]) -> pa.Table:
    """Rows to an Arrow table with :data:`ATTEMPT_SCHEMA`."""
    rows = list(attempts)
    columns = {name: [getattr(row, name) for row in rows] for name in ATTEMPT_SCHEMA.names}
    columns["skill_ids"] = [list(row.skill_ids) for row in rows]
    return pa.table(columns, schema=ATTEMPT_SCHEMA)


def part_file_name(topic: str, partition: int, first_offset: int) -> str:
    """The deterministic file name of the records of ``topic[partition]`` from ``first_offset``."""
    if partition < 0 or first_offset < 0:
        raise LakeError(f"partition and offset must be >= 0, got {partition}, {first_offset}")
    safe_topic = _UNSAFE_TOPIC_CHARS.sub("_", topic)
    return f"part-{safe_topic}-{partition:05d}-{first_offset:020d}.parquet"


def partition_dir(root: Path, event_date: date, tenant_id: str) -> Path:
    """The folder of one day and tenant, e.g. ``attempts/event_date=2024-03-01/tenant_id=acme``."""
    return (
        root
        / ATTEMPTS_TABLE
        / f"event_date={event_date.isoformat()}"
        / f"tenant_id={quote(tenant_id, safe='')}"
    )


def write_attempts(root: Path, table: pa.Table, *, topic: str, partition: int) -> list[Path]:
    """Write rows consumed from ``topic[partition]`` into the lake, atomically and idempotently.

    ``table`` has :data:`ATTEMPT_SCHEMA` and holds records of one Kafka partition
    (``kafka_partition == partition``). Rows are split by UTC date of
    ``occurred_at`` and tenant; each group becomes one file named after the
    smallest offset of the whole batch. Returns the files written, in path order.
    Writing the same offsets again rewrites the same files (see the module docstring).
    """
    if not table.schema.equals(ATTEMPT_SCHEMA, check_metadata=False):
        table = table.cast(ATTEMPT_SCHEMA)
    if table.num_rows == 0:
        return []
    partitions = pc.unique(table["kafka_partition"]).to_pylist()
    if partitions != [partition]:
        raise LakeError(
            f"rows of {topic} must all come from partition {partition}, got {partitions}"
        )
    offsets = table["kafka_offset"]
    first_offset = int(pc.min(offsets).as_py())
    last_offset = int(pc.max(offsets).as_py())
    name = part_file_name(topic, partition, first_offset)

    event_dates = pc.cast(table["occurred_at"], pa.date32())
    table = table.append_column("event_date", event_dates)
    keys = table.group_by(["event_date", "tenant_id"]).aggregate([]).to_pylist()
    written: list[Path] = []
    for key in sorted(keys, key=lambda k: (k["event_date"], k["tenant_id"])):
        selected = table.filter(
            pc.and_(
                pc.equal(table["event_date"], pa.scalar(key["event_date"], pa.date32())),
                pc.equal(table["tenant_id"], key["tenant_id"]),
            )
        )
        rows = selected.sort_by("kafka_offset").select(ATTEMPT_FILE_SCHEMA.names)
        folder = partition_dir(root, key["event_date"], key["tenant_id"])
        folder.mkdir(parents=True, exist_ok=True)
        _remove_superseded(folder, topic, partition, first_offset, last_offset, keep=name)
        target = folder / name
        _write_atomically(rows.cast(ATTEMPT_FILE_SCHEMA), target)
        written.append(target)
    return written


def _remove_superseded(
    folder: Path, topic: str, partition: int, first: int, last: int, *, keep: str
) -> None:
    # A file of the same topic partition starting inside (first, last] came from an
    # earlier, uncommitted attempt at these offsets: this write and the ones that
    # follow it in the replay hold its rows again.
    safe_topic = _UNSAFE_TOPIC_CHARS.sub("_", topic)
    for path in folder.iterdir():
        match = _PART_NAME.match(path.name)
        if match is None or path.name == keep:
            continue
        if (
            match["topic"] == safe_topic
            and int(match["partition"]) == partition
            and first < int(match["offset"]) <= last
        ):
            path.unlink(missing_ok=True)


def _write_atomically(table: pa.Table, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as sink:
            pq.write_table(table, sink, compression="zstd")
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    # The rename is durable only once the folder entry is on disk.
    folder_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def attempts_dataset(root: Path) -> ds.Dataset:
    """The attempts table as a pyarrow dataset; partition keys appear as columns.

    Raises :class:`LakeError` when the lake has no attempts folder yet.
    """
    folder = root / ATTEMPTS_TABLE
    if not folder.is_dir():
        raise LakeError(f"no lake attempts under {folder}")
    return ds.dataset(
        folder,
        format="parquet",
        schema=pa.unify_schemas([ATTEMPT_FILE_SCHEMA, PARTITION_SCHEMA]),
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
    )


def date_tenant_filter(
    *,
    start_date: date | None = None,
    end_date: date | None = None,
    tenant_ids: Sequence[str] | None = None,
) -> ds.Expression | None:
    """Dataset filter: ``start_date <= event_date <= end_date`` (inclusive, UTC), tenant in list."""
    conditions: list[ds.Expression] = []
    if start_date is not None:
        conditions.append(ds.field("event_date") >= pa.scalar(start_date, pa.date32()))
    if end_date is not None:
        conditions.append(ds.field("event_date") <= pa.scalar(end_date, pa.date32()))
    if tenant_ids is not None:
        conditions.append(ds.field("tenant_id").isin(list(tenant_ids)))
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = combined & condition
    return combined


def read_attempts(
    root: Path,
    *,
    start_date: date | None = None,
    end_date: date | None = None,
    tenant_ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Attempts in the inclusive UTC date range and tenants given (all when ``None``).

    Partition pruning means only matching folders are opened. Row order is not defined;
    sort by ``occurred_at`` (and ``kafka_offset``) where order matters.
    """
    dataset = attempts_dataset(root)
    return dataset.to_table(
        columns=list(columns) if columns is not None else None,
        filter=date_tenant_filter(start_date=start_date, end_date=end_date, tenant_ids=tenant_ids),
    )


def list_partitions(
    root: Path,
    *,
    start_date: date | None = None,
    end_date: date | None = None,
    tenant_ids: Sequence[str] | None = None,
) -> list[LakePartition]:
    """The partitions in range with their files and row counts (from Parquet footers)."""
    folder = root / ATTEMPTS_TABLE
    found: list[LakePartition] = []
    if not folder.is_dir():
        return found
    wanted = set(tenant_ids) if tenant_ids is not None else None
    for date_dir in sorted(folder.glob("event_date=*")):
        event_date = date.fromisoformat(date_dir.name.removeprefix("event_date="))
        if (start_date and event_date < start_date) or (end_date and event_date > end_date):
            continue
        for tenant_dir in sorted(date_dir.glob("tenant_id=*")):
            tenant_id = unquote(tenant_dir.name.removeprefix("tenant_id="))
            if wanted is not None and tenant_id not in wanted:
                continue
            files = sorted(p for p in tenant_dir.glob("*.parquet") if _PART_NAME.match(p.name))
            rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
            found.append(
                LakePartition(
                    event_date=event_date,
                    tenant_id=tenant_id,
                    files=tuple(str(p.relative_to(root)) for p in files),
                    rows=rows,
                )
            )
    return found


def utc_from_ms(epoch_ms: int) -> datetime:
    """A UTC datetime from milliseconds since the Unix epoch."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def parse_part_file_name(name: str) -> tuple[str, int, int] | None:
    """``(topic, partition, first offset)`` of a lake file name, ``None`` for other files.

    The topic is the sanitised one the name carries (see :func:`part_file_name`).
    """
    match = _PART_NAME.match(name)
    if match is None:
        return None
    return match["topic"], int(match["partition"]), int(match["offset"])


def write_table_atomically(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` (Parquet, zstd) so readers see the old file or the new one.

    The lake's own write path (temporary hidden name, fsync, rename, folder fsync), for
    jobs that rewrite lake files (compaction) or write derived tables beside the lake.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(table, target)


@dataclass(frozen=True, slots=True)
class LakeErasure:
    """What :func:`erase_learners` did: files read, rewritten, removed, rows removed."""

    files_scanned: int = 0
    files_rewritten: tuple[str, ...] = ()  # relative to the lake root
    files_removed: tuple[str, ...] = ()  # every row was erased: the file is gone
    rows_removed: int = 0


def erase_learners(root: Path, erased: Mapping[str, Iterable[str]]) -> LakeErasure:
    """Remove every row of the erased learners (tenant -> learner ids) from the lake.

    Only the tenants' folders are read, and of each file first only its ``user_id``
    column. A file holding an erased learner is rewritten without those rows the way
    the lake writes (hidden temporary file, fsync, rename over the old one, folder
    fsync), then read back: it must hold exactly the rows kept and none of the erased
    ids, or :class:`LakeError` is raised. A file left with no rows is removed. Files of
    other tenants are never opened. Running it again finds nothing.
    """
    scanned = 0
    rewritten: list[str] = []
    removed: list[str] = []
    rows_removed = 0
    folder = root / ATTEMPTS_TABLE
    wanted = {tenant: sorted(set(ids)) for tenant, ids in erased.items() if ids}
    if not folder.is_dir() or not wanted:
        return LakeErasure()
    for tenant_id, ids in sorted(wanted.items()):
        id_array = pa.array(ids, pa.string())
        tenant_folder = f"tenant_id={quote(tenant_id, safe='')}"
        for tenant_dir in sorted(folder.glob(f"event_date=*/{_glob_literal(tenant_folder)}")):
            for path in sorted(tenant_dir.glob("*.parquet")):
                if _PART_NAME.match(path.name) is None:
                    continue
                scanned += 1
                users = pq.read_table(path, columns=["user_id"])["user_id"]
                hits = int(pc.sum(pc.is_in(users, value_set=id_array)).as_py() or 0)
                if hits == 0:
                    continue
                table = pq.read_table(path, schema=ATTEMPT_FILE_SCHEMA)
                kept = table.filter(pc.invert(pc.is_in(table["user_id"], value_set=id_array)))
                relative = str(path.relative_to(root))
                rows_removed += table.num_rows - kept.num_rows
                if kept.num_rows == 0:
                    path.unlink()
                    _fsync_folder(path.parent)
                    removed.append(relative)
                    continue
                _write_atomically(kept.cast(ATTEMPT_FILE_SCHEMA), path)
                _verify_erased(path, id_array, expected_rows=kept.num_rows)
                rewritten.append(relative)
    return LakeErasure(scanned, tuple(rewritten), tuple(removed), rows_removed)


def learner_rows(
    root: Path, tenant_id: str, user_ids: Iterable[str]
) -> list[tuple[str, dict[str, object]]]:
    """Every lake row of the learners, as ``(file relative to the root, row)`` (for export)."""
    folder = root / ATTEMPTS_TABLE
    ids = pa.array(sorted(set(user_ids)), pa.string())
    found: list[tuple[str, dict[str, object]]] = []
    if not folder.is_dir() or len(ids) == 0:
        return found
    tenant_folder = f"tenant_id={quote(tenant_id, safe='')}"
    for tenant_dir in sorted(folder.glob(f"event_date=*/{_glob_literal(tenant_folder)}")):
        for path in sorted(tenant_dir.glob("*.parquet")):
            if _PART_NAME.match(path.name) is None:
                continue
            table = pq.read_table(path, schema=ATTEMPT_FILE_SCHEMA)
            selected = table.filter(pc.is_in(table["user_id"], value_set=ids))
            relative = str(path.relative_to(root))
            found.extend((relative, row) for row in selected.to_pylist())
    return found


def _verify_erased(path: Path, ids: pa.Array, *, expected_rows: int) -> None:
    # Read back what is now on disk under the final name.
    users = pq.read_table(path, columns=["user_id"])["user_id"]
    left = int(pc.sum(pc.is_in(users, value_set=ids)).as_py() or 0)
    if left or len(users) != expected_rows:
        raise LakeError(
            f"{path}: read back {len(users)} rows with {left} of erased learners; "
            f"expected {expected_rows} and none"
        )


def _glob_literal(text: str) -> str:
    # Percent-encoded names hold no glob characters but "%"; brackets escape the rest.
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _fsync_folder(folder: Path) -> None:
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
