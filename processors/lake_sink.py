"""The lake sink: every accepted attempt into the Parquet lake, once, even across crashes.

It is a processor like the others (:mod:`processors.base`), so a batch is one
PostgreSQL transaction that stores the consumed offsets in ``processor_offsets``;
its "view" is the lake (:mod:`learnstream.lake`, the one schema, layout and writer):

1. the batch's attempts are grouped by Kafka partition, then by UTC day of
   ``occurred_at`` and tenant (the hive partitions ``event_date=/tenant_id=``);
2. each group is written to one file named after the group's smallest offset,
   written under a hidden temporary name, fsynced and renamed into place;
3. only then are the offsets committed.

A crash after a rename and before the commit leaves files whose offsets are not
committed; the next worker consumes the same offsets again, in batches that may be
cut differently. Naming each file after the first offset *of its own group* (not of
the batch) makes that harmless: a replayed group that starts at the same record
overwrites the old file, and :func:`learnstream.lake.write_attempts` removes the old
files of the same topic partition whose first offset falls inside the group it
writes. When the replay reaches the first record of an old file, that record lands
in the same folder's group of the replayed batch, which either starts at it (the
file is overwritten) or before it (the file is removed). Every record is therefore
in exactly one file once the replay has passed it.

File size: a batch is up to ``lake_batch_max`` records or what arrived within
``lake_batch_within_s`` (defaults 20,000 / 10 s), split over Kafka partitions, days
and tenants. A busy topic gives files of thousands of rows; a quiet one gives small
files, which the compaction job merges (docs/operations.md). Hidden
``.part-*.tmp-*`` files are what a crash mid-write leaves; readers skip them.

Attempts are decoded with the same rules as the learner-state processor (the rules
ingest applies), so what the lake holds is what the views were built from; records
that fail them are dead-lettered. Other topics would need their own lake schema in
:mod:`learnstream.lake`; for now only attempts (code attempts included, as the code
submissions processor turns them into attempts) are sunk.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import asyncpg

from learnstream import lake
from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from processors import metrics
from processors.base import Decoded, Flow
from processors.events import Attempt, decode_attempt
from processors.offsets import SourceRecord

NAME = "lake_sink"

GroupKey = tuple[str, int, date, str]  # topic, Kafka partition, event date, tenant


def sink_settings(settings: Settings) -> Settings:
    """``settings`` with the lake sink's batch size and flush time as the batch limits."""
    return settings.model_copy(
        update={
            "processor_batch_max": settings.lake_batch_max,
            "processor_batch_within_s": settings.lake_batch_within_s,
        }
    )


def lake_row(item: Decoded[Attempt]) -> lake.LakeAttempt:
    """One attempt as a lake row, with where it was read from."""
    attempt, record = item.event, item.record
    return lake.LakeAttempt(
        event_id=attempt.event_id,
        tenant_id=attempt.tenant_id,
        user_id=attempt.user_id,
        occurred_at=attempt.occurred_at,
        item_id=attempt.item_id,
        skill_ids=attempt.skill_ids,
        correct=attempt.correct,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        received_at=attempt.received_at,
        item_version=attempt.item_version,
        score=attempt.score,
        response_time_ms=attempt.response_time_ms,
        hint_count=attempt.hint_count,
        attempt_number=attempt.attempt_number,
        context=attempt.context,
    )


def file_groups(batch: Sequence[Decoded[Attempt]]) -> dict[GroupKey, list[lake.LakeAttempt]]:
    """The batch's rows per file: Kafka topic and partition, UTC day, tenant; offset order."""
    groups: dict[GroupKey, list[lake.LakeAttempt]] = defaultdict(list)
    for item in batch:
        day = item.event.occurred_at.date()  # occurred_at is UTC
        key = (item.record.topic, item.record.partition, day, item.event.tenant_id)
        groups[key].append(lake_row(item))
    return {key: sorted(rows, key=lambda r: r.kafka_offset) for key, rows in groups.items()}


def write_groups(root: Path, groups: dict[GroupKey, list[lake.LakeAttempt]]) -> list[Path]:
    """Write one file per group (atomically, named after the group's first offset)."""
    written: list[Path] = []
    for (topic, partition, _, _), rows in sorted(groups.items()):
        written.extend(
            lake.write_attempts(root, lake.attempts_table(rows), topic=topic, partition=partition)
        )
    return written


class LakeSinkProcessor:
    """Attempts to Parquet with exactly-once files (module docstring)."""

    name = NAME
    flow = Flow(reads=(Stream.ATTEMPTS,), writes=(f"lake:{lake.ATTEMPTS_TABLE}",))
    sources = flow.reads

    def __init__(self, settings: Settings, *, root: Path | None = None) -> None:
        self.root = root if root is not None else lake.default_root(settings)

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]
    ) -> list[OutgoingRecord]:
        """Write the batch's files before the transaction commits its offsets."""
        groups = file_groups(batch)
        # Parquet encoding and fsync block; keep the event loop (heartbeats) free.
        written = await asyncio.to_thread(write_groups, self.root, groups)
        metrics.LAKE_FILES.labels(lake.ATTEMPTS_TABLE).inc(len(written))
        metrics.LAKE_ROWS.labels(lake.ATTEMPTS_TABLE).inc(sum(len(r) for r in groups.values()))
        return []
