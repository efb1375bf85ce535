"""The ``processor_offsets`` rows: what each consumer group has applied, in PostgreSQL.

Per (consumer group, topic, partition) the row holds the next offset whose effect is
not in the database yet. :class:`processors.base.BatchRunner` locks a batch's rows
(:func:`lock_offsets`), decides what to apply from them
(:func:`processors.offsets.plan_batch`) and stores the new next offsets
(:func:`store_offsets`), all in the batch's transaction; the lag sampler reads them
unlocked (:func:`read_offsets`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import asyncpg

from processors.offsets import TopicPartition

_SELECT_OFFSETS = """
    SELECT o.topic, o.partition, o.next_offset
    FROM processor_offsets AS o
    JOIN unnest($2::text[], $3::int[]) AS wanted(topic, partition)
      ON o.topic = wanted.topic AND o.partition = wanted.partition
    WHERE o.consumer_group = $1
    ORDER BY o.topic, o.partition
    FOR UPDATE OF o
"""
# The same rows, unlocked: what the lag sampler reads.
_READ_OFFSETS = _SELECT_OFFSETS.replace("FOR UPDATE OF o", "")
_INSERT_MISSING_OFFSETS = """
    INSERT INTO processor_offsets (consumer_group, topic, partition, next_offset)
    SELECT $1, wanted.topic, wanted.partition, 0
    FROM unnest($2::text[], $3::int[]) AS wanted(topic, partition)
    ORDER BY wanted.topic, wanted.partition
    ON CONFLICT (consumer_group, topic, partition) DO NOTHING
"""
# An upsert rather than an UPDATE: a row that is missing (it cannot be, the lock
# step creates it) must not make the new offset vanish silently.
_STORE_OFFSETS = """
    INSERT INTO processor_offsets (consumer_group, topic, partition, next_offset, updated_at)
    SELECT $1, stored.topic, stored.partition, stored.next_offset, now()
    FROM unnest($2::text[], $3::int[], $4::bigint[]) AS stored(topic, partition, next_offset)
    ON CONFLICT (consumer_group, topic, partition)
    DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
"""


async def lock_offsets(
    conn: asyncpg.Connection,
    consumer_group: str,
    tps: Sequence[TopicPartition],
    *,
    known: Collection[TopicPartition],
) -> dict[TopicPartition, int]:
    """Lock the offset rows of ``tps``; the stored next offset of those that existed.

    Rows of partitions not in ``known`` (rows seen committed before) are inserted
    first at 0, so even a brand-new partition's row is locked and two workers cannot
    both apply its first records.
    """
    missing = [tp for tp in tps if tp not in known]
    if missing:
        await conn.execute(
            _INSERT_MISSING_OFFSETS,
            consumer_group,
            [tp.topic for tp in missing],
            [tp.partition for tp in missing],
        )
    rows = await conn.fetch(
        _SELECT_OFFSETS, consumer_group, [tp.topic for tp in tps], [tp.partition for tp in tps]
    )
    stored = {TopicPartition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}
    # A row we just created at 0 says nothing about gaps (retention may have
    # removed the partition's first records); only rows that existed do.
    return {tp: offset for tp, offset in stored.items() if tp not in missing or offset > 0}


async def store_offsets(
    conn: asyncpg.Connection, consumer_group: str, next_offsets: Mapping[TopicPartition, int]
) -> None:
    """Store ``next_offsets`` (next offset to apply, per partition) for ``consumer_group``."""
    tps = sorted(next_offsets)
    await conn.execute(
        _STORE_OFFSETS,
        consumer_group,
        [tp.topic for tp in tps],
        [tp.partition for tp in tps],
        [next_offsets[tp] for tp in tps],
    )


async def read_offsets(
    pool: asyncpg.Pool, consumer_group: str, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The next offsets stored for ``tps`` (no lock taken)."""
    rows = await pool.fetch(
        _READ_OFFSETS, consumer_group, [tp.topic for tp in tps], [tp.partition for tp in tps]
    )
    return {TopicPartition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}
