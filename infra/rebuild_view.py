"""Rebuild a processor's views while the old ones keep serving: ``python -m infra.rebuild_view P``.

Nothing is emptied and no worker has to stop. After showing the plan and asking
(``--yes`` skips the question, ``--dry-run`` only shows it), it:

1. creates schema ``rebuild__<processor>`` with empty copies of the processor's view
   tables (:mod:`infra.shadow_tables`); the running workers and the API go on using
   ``public``'s tables;
2. for a processor of lake attempts (:data:`LAKE_FED`), replays the lake's rows into the
   copies through the processor's own runner (:class:`processors.base.BatchRunner`,
   consumer group ``<group>.rebuild`` in ``processor_offsets``): ``--lake aged-out``
   (the default) the rows the topic no longer holds (offsets below each partition's log
   start, removed by ``topic_retention_ms``), ``--lake all`` every lake row (rows from
   the lake carry no session id), ``--lake none`` nothing;
3. reads every source partition from its start (assigned, never as a member of the
   processor's consumer group, so the group sees no rebalance) and applies it to the
   copies until it reaches the end the broker reports;
4. in ONE PostgreSQL transaction: locks the group's ``processor_offsets`` rows (workers'
   next batches wait), applies what the workers committed meanwhile so the copies reach
   at least the live offsets, moves the live tables to ``rebuild__<processor>__old`` and
   the copies into ``public``, and sets the group's offsets to the copies' (records the
   copies applied beyond them are skipped by the workers as already applied); commits;
5. drops the old tables.

The views are never empty: readers see the old rows until the commit and the rebuilt
ones after it. The whole run is bounded by ``--timeout``; on any failure or at the
timeout the transaction rolls back, the copies are dropped, and the live views and
offsets are exactly as they were (exit status 2 and a message saying why).

The copies are written with the processor's code but publish no derived records (the
originals went out when the workers applied the records) and refresh no cache; a
record the processor cannot use is dead-lettered again. Erased learners stay erased:
the lake replay skips tombstoned learners' rows (``privacy_tombstones``) and the
runner drops their records from the lake and the topic alike.

Limits: the topics hold what their retention kept and the lake what the lake sink
wrote (attempts only); other source topics are replayed from what Kafka still holds.
Views other processors derived from these (e.g. recommendations from mastery) are
not rebuilt; rebuild them after this one. The Redis hot cache of learners keeps its
entries until the learner's next attempt or their TTL (flushing them is safe).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from infra import shadow_tables
from learnstream import db, lake
from learnstream.events.v1 import attempt_pb2
from learnstream.exceptions import LearnstreamError
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    OutgoingRecord,
    Stream,
    admin_client,
    consumer_config,
    learner_key,
)
from learnstream.privacy import all_tombstones
from learnstream.settings import Settings, get_settings

if TYPE_CHECKING:
    from processors.base import Flow

LakeMode = Literal["aged-out", "all", "none"]
# Processors whose input is exactly what the lake holds (attempts): their history older
# than the topics is in the lake.
LAKE_FED = frozenset({"learner_state", "aggregates", "predictions"})
_ATTEMPT_TYPE = attempt_pb2.AttemptEvent.DESCRIPTOR.full_name.encode()
# How long the swap may wait for a table lock (readers hold them for a query at a time).
SWAP_LOCK_TIMEOUT = "10s"

# The tables each processor writes (its views).
LEARNER_STATE_TABLES = ("attempts", "skill_mastery", "learner_ability", "review_schedule")
VIEW_TABLES: dict[str, tuple[str, ...]] = {
    "learner_state": LEARNER_STATE_TABLES,
    "gaps": ("knowledge_gaps",),
    "fraud": (
        "fraud_signals",
        "fraud_learner_history",
        "fraud_device_sessions",
        "fraud_group_wrong_answers",
        "fraud_wrong_answer_counts",
        "fraud_collusion_partners",
        "fraud_reference_stats",
    ),
    "aggregates": ("activity_aggregates", "activity_window_learners"),
    "recommendations": ("recommendations", "recommendation_learners", "recommendation_bandit"),
    "recommendation_analytics": (
        "recommendation_impressions",
        "experiment_exposures",
        "experiment_results",
    ),
    "predictions": ("skill_predictions", "prediction_learner_state", "model_shadow_scores"),
}


@dataclass(frozen=True)
class RebuildPlan:
    """What a rebuild will change."""

    processor: str
    consumer_group: str
    tables: tuple[str, ...]
    topics: tuple[str, ...]
    partitions: tuple[TopicPartition, ...]

    @property
    def shadow_group(self) -> str:
        """The ``processor_offsets`` group of the copies while they are built."""
        return f"{self.consumer_group}.rebuild"

    @property
    def schema(self) -> str:
        return shadow_tables.shadow_schema(self.processor)


def source_topics(settings: Settings, processor: str) -> tuple[str, ...]:
    """The topics ``processor`` consumes (from its registration in processors/)."""
    from processors.__main__ import PROCESSORS  # the processors' own registry

    if processor not in PROCESSORS or processor not in VIEW_TABLES:
        known = sorted(set(PROCESSORS) & set(VIEW_TABLES))
        raise LearnstreamError(f"unknown processor {processor!r}; known: {known}")
    return tuple(settings.topic(stream) for stream in PROCESSORS[processor](settings).sources)


def make_plan(settings: Settings, processor: str, tables: tuple[str, ...]) -> RebuildPlan:
    """The plan for ``processor``: its group, tables, and every partition of its topics."""
    from processors.app import app_id

    topics = source_topics(settings, processor)
    metadata = admin_client(settings).list_topics(timeout=10)
    partitions: list[TopicPartition] = []
    for topic in topics:
        if topic not in metadata.topics:
            raise LearnstreamError(f"topic {topic} does not exist on {settings.kafka_bootstrap}")
        partitions.extend(
            TopicPartition(topic, p, 0) for p in sorted(metadata.topics[topic].partitions)
        )
    return RebuildPlan(processor, app_id(settings, processor), tables, topics, tuple(partitions))


async def row_counts(settings: Settings, plan: RebuildPlan) -> dict[str, int]:
    """Rows per view table and of the group's processor_offsets, before the rebuild."""
    conn = await db.connect(settings, role="owner")
    try:
        counts = {
            table: int(await conn.fetchval(f'SELECT count(*) FROM public."{table}"'))
            for table in plan.tables
        }
        counts["processor_offsets"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM processor_offsets WHERE consumer_group = $1",
                plan.consumer_group,
            )
        )
        return counts
    finally:
        await conn.close()


class ShadowProcessor:
    """A processor writing the copies: same decoding and view writes, nothing published.

    It exposes no ``committed`` hook, so the runner refreshes no cache from the copies.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def flow(self) -> Flow:
        inner: Flow = self.inner.flow
        return replace(inner, emits=())  # it publishes nothing

    @property
    def sources(self) -> tuple[Stream, ...]:
        return tuple(self.inner.sources)

    def decode(self, record: Any) -> Any:
        return self.inner.decode(record)

    def event_id(self, event: Any) -> str:
        return str(self.inner.event_id(event))

    async def apply(self, conn: asyncpg.Connection, batch: Sequence[Any]) -> list[OutgoingRecord]:
        await self.inner.apply(conn, batch)
        return []  # derived records went out when the workers applied these records

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()


def shadow_runner(settings: Settings, plan: RebuildPlan) -> Any:
    """A runner applying ``plan``'s processor to the copies (gaps applied, never held)."""
    from processors.__main__ import PROCESSORS
    from processors.base import BatchRunner

    shadow = shadow_tables.shadow_settings(settings, plan.schema)
    processor = ShadowProcessor(PROCESSORS[plan.processor](shadow))
    return BatchRunner(processor, shadow, consumer_group=plan.shadow_group, hold_back_gaps=False)


def attempt_record(topic: str, tenant_id: str, row: Mapping[str, Any]) -> Any:
    """The Kafka record a lake row was read from (a :class:`processors.offsets.SourceRecord`)."""
    from processors.offsets import SourceRecord

    event = attempt_pb2.AttemptEvent(
        item_id=row["item_id"],
        item_version=row["item_version"] or 0,
        skill_ids=list(row["skill_ids"]),
        correct=row["correct"],
        response_time_ms=row["response_time_ms"] or 0,
        hint_count=row["hint_count"] or 0,
        attempt_number=row["attempt_number"] or 0,
    )
    if row["score"] is not None:
        event.score = row["score"]
    if row["context"]:
        event.context = attempt_pb2.AttemptContext.Value(f"ATTEMPT_CONTEXT_{row['context']}")
    envelope = event.envelope
    envelope.event_id = row["event_id"]
    envelope.tenant_id = tenant_id
    envelope.user_id = row["user_id"]
    envelope.occurred_at.FromDatetime(row["occurred_at"])
    if row["received_at"] is not None:
        envelope.received_at.FromDatetime(row["received_at"])
    return SourceRecord(
        topic=topic,
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        key=learner_key(tenant_id, row["user_id"]),
        value=event.SerializeToString(),
        headers=((EVENT_TYPE_HEADER, _ATTEMPT_TYPE), (EVENT_ID_HEADER, row["event_id"].encode())),
    )


def lake_records(
    root: Any,
    topic: str,
    *,
    below: Mapping[int, int] | None,
    erased: Mapping[str, set[str]],
) -> list[Any]:
    """The lake's records of ``topic``, in (partition, offset) order, each once.

    ``below`` keeps, per partition, only offsets under the given one (the topic's log
    start: what the topic no longer holds); None keeps all. Rows of erased learners
    (tenant -> ids) are left out.
    """
    safe_topic = lake.parse_part_file_name(lake.part_file_name(topic, 0, 0))
    assert safe_topic is not None
    records: dict[tuple[int, int], Any] = {}
    for partition in lake.list_partitions(root):
        gone = erased.get(partition.tenant_id, set())
        for relative in partition.files:
            parsed = lake.parse_part_file_name(relative.rsplit("/", 1)[-1])
            if parsed is None or parsed[0] != safe_topic[0]:
                continue
            for row in pq.read_table(root / relative, schema=lake.ATTEMPT_FILE_SCHEMA).to_pylist():
                position = (row["kafka_partition"], row["kafka_offset"])
                if row["user_id"] in gone or position in records:
                    continue
                if below is not None and row["kafka_offset"] >= below.get(position[0], 0):
                    continue
                records[position] = attempt_record(topic, partition.tenant_id, row)
    return [records[position] for position in sorted(records)]


def log_start_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    """The first offset each partition of ``topic`` still holds (its low watermark)."""
    consumer = Consumer(consumer_config(settings, f"{settings.kafka_topic_namespace}.rebuild"))
    try:
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0])
            for p in partitions
        }
    finally:
        consumer.close()


async def replay_lake(settings: Settings, plan: RebuildPlan, mode: LakeMode, runner: Any) -> int:
    """Apply the lake's attempts through ``runner`` (the copies'); returns records replayed."""
    if mode == "none" or plan.processor not in LAKE_FED:
        return 0
    topic = settings.topic(Stream.ATTEMPTS)
    below = None
    if mode == "aged-out":
        ids = sorted(tp.partition for tp in plan.partitions if tp.topic == topic)
        below = await asyncio.to_thread(log_start_offsets, settings, topic, ids)
    conn = await db.connect(settings)
    try:
        erased: dict[str, set[str]] = {}
        for tenant_id, subject_id, _ in await all_tombstones(conn):
            erased.setdefault(tenant_id, set()).add(subject_id)
    finally:
        await conn.close()
    records = await asyncio.to_thread(
        lake_records, lake.default_root(settings), topic, below=below, erased=erased
    )
    step = settings.processor_batch_max
    for start in range(0, len(records), step):
        await runner.process(records[start : start + step])
    return len(records)


Positions = dict[tuple[str, int], int]


async def stored_offsets(conn: asyncpg.Connection, group: str, *, lock: bool = False) -> Positions:
    """``processor_offsets`` of ``group``: (topic, partition) -> next offset."""
    sql = "SELECT topic, partition, next_offset FROM processor_offsets WHERE consumer_group = $1"
    rows = await conn.fetch(sql + (" ORDER BY 1, 2 FOR UPDATE" if lock else ""), group)
    return {(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}


class TopicReader:
    """Reads the source partitions from ``start`` without joining any consumer group."""

    def __init__(self, settings: Settings, plan: RebuildPlan, start: Positions) -> None:
        config = consumer_config(settings, f"{plan.shadow_group}.reader")
        config["enable.partition.eof"] = True  # the fetch high watermark: right on Tansu too
        self.consumer = Consumer(config)
        self.consumer.assign(
            [
                TopicPartition(
                    tp.topic, tp.partition, start.get((tp.topic, tp.partition), OFFSET_BEGINNING)
                )
                for tp in plan.partitions
            ]
        )
        self.at_end: set[tuple[str, int]] = set()

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        """The next records (SourceRecords), noting partitions that reached their end."""
        from processors.offsets import SourceRecord

        records = []
        for message in self.consumer.consume(max_records, timeout=timeout_s):
            topic, partition = str(message.topic()), int(message.partition() or 0)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.at_end.add((topic, partition))
                    continue
                raise LearnstreamError(f"reading {topic}[{partition}]: {error}")
            self.at_end.discard((topic, partition))
            headers = tuple(
                (str(pair[0]), pair[1] if isinstance(pair[1], bytes) else b"")
                for pair in (message.headers() or [])
            )
            key, value = message.key(), message.value()
            records.append(
                SourceRecord(
                    topic,
                    partition,
                    int(message.offset() or 0),
                    key.encode() if isinstance(key, str) else key,
                    value.encode() if isinstance(value, str) else value,
                    headers,
                )
            )
        return records

    def close(self) -> None:
        self.consumer.close()


async def catch_up(
    reader: TopicReader,
    runner: Any,
    reached: Positions,
    *,
    until: Mapping[tuple[str, int], int] | None,
    partitions: int,
    batch: int,
) -> int:
    """Apply records until every partition is at its end (``until`` None) or ``until``.

    ``reached`` (the copies' next offsets) is updated in place; returns records read.
    """

    def done() -> bool:
        if until is None:
            return len(reader.at_end) >= partitions
        return all(reached.get(tp, 0) >= offset for tp, offset in until.items())

    read = 0
    while not done():
        records = await asyncio.to_thread(reader.poll, batch, 0.5)
        if records:
            outcome = await runner.process(records)
            for tp, offset in outcome.next_offsets.items():
                reached[(tp.topic, tp.partition)] = offset
            read += len(records)
    return read


async def build_and_swap(
    settings: Settings, plan: RebuildPlan, mode: LakeMode, *, report: Any = print
) -> dict[str, int]:
    """Steps 1 to 5 of the module docstring; returns figures (records, rows, seconds)."""
    started = time.monotonic()
    figures: dict[str, int] = {}
    owner = await db.connect(settings, role="owner")
    try:
        problems = await shadow_tables.unsupported(owner, plan.tables)
        if problems:
            raise LearnstreamError("cannot rebuild into copies: " + "; ".join(problems))
        await owner.execute(
            "DELETE FROM processor_offsets WHERE consumer_group = $1", plan.shadow_group
        )
        await shadow_tables.create_shadow(
            owner, plan.schema, plan.tables, settings.database_service_role
        )
        report(f"created the copies in schema {plan.schema}")
        runner = shadow_runner(settings, plan)
        try:
            figures["lake_records"] = await replay_lake(settings, plan, mode, runner)
            report(f"replayed {figures['lake_records']:,} attempts from the lake")
            reached = await stored_offsets(owner, plan.shadow_group)
            reader = TopicReader(settings, plan, reached)
            try:
                batch = settings.processor_batch_max
                count = len(plan.partitions)
                figures["topic_records"] = await catch_up(
                    reader, runner, reached, until=None, partitions=count, batch=batch
                )
                report(f"applied {figures['topic_records']:,} records from the topics")
                async with owner.transaction():
                    await owner.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                    live = await lock_live_offsets(owner, plan)
                    figures["tail_records"] = await catch_up(
                        reader, runner, reached, until=live, partitions=count, batch=batch
                    )
                    await shadow_tables.swap(
                        owner, plan.processor, plan.tables, settings.database_service_role
                    )
                    await move_offsets(owner, plan)
            finally:
                reader.close()
        finally:
            await runner.close()
        report(f"swapped; {figures['tail_records']:,} records applied while workers waited")
        for table in plan.tables:
            figures[table] = int(await owner.fetchval(f'SELECT count(*) FROM public."{table}"'))
    finally:
        await owner.close()
    await shadow_tables.drop_schemas(
        settings, plan.schema, shadow_tables.retired_schema(plan.processor)
    )
    figures["seconds"] = round(time.monotonic() - started)
    return figures


async def lock_live_offsets(conn: asyncpg.Connection, plan: RebuildPlan) -> Positions:
    """Lock (creating if missing) the group's offset row of every source partition."""
    await conn.execute(
        "INSERT INTO processor_offsets (consumer_group, topic, partition, next_offset) "
        "SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS w(t, p) "
        "ON CONFLICT (consumer_group, topic, partition) DO NOTHING",
        plan.consumer_group,
        [tp.topic for tp in plan.partitions],
        [tp.partition for tp in plan.partitions],
    )
    return await stored_offsets(conn, plan.consumer_group, lock=True)


async def move_offsets(conn: asyncpg.Connection, plan: RebuildPlan) -> None:
    """The group's offsets become the copies' (never lower), the copies' rows go."""
    await conn.execute(
        """
        UPDATE processor_offsets AS live SET next_offset = shadow.next_offset, updated_at = now()
        FROM processor_offsets AS shadow
        WHERE live.consumer_group = $1 AND shadow.consumer_group = $2
          AND live.topic = shadow.topic AND live.partition = shadow.partition
          AND shadow.next_offset > live.next_offset
        """,
        plan.consumer_group,
        plan.shadow_group,
    )
    await conn.execute("DELETE FROM processor_offsets WHERE consumer_group = $1", plan.shadow_group)


async def rebuild(
    settings: Settings, plan: RebuildPlan, mode: LakeMode, *, timeout_s: float
) -> dict[str, int]:
    """:func:`build_and_swap` within ``timeout_s``; on failure the copies are dropped.

    Raises LearnstreamError saying why; the live views and offsets are then unchanged.
    """
    try:
        return await asyncio.wait_for(build_and_swap(settings, plan, mode), timeout_s)
    except BaseException as exc:
        await _abandon(settings, plan)
        if isinstance(exc, TimeoutError):
            raise LearnstreamError(
                f"the rebuild did not finish within {timeout_s:.0f} s (--timeout); the live "
                "views and offsets are unchanged and the copies were dropped"
            ) from exc
        if isinstance(exc, LearnstreamError | asyncpg.PostgresError):
            raise LearnstreamError(
                f"{exc}; the live views and offsets are unchanged and the copies were dropped"
            ) from exc
        raise


async def _abandon(settings: Settings, plan: RebuildPlan) -> None:
    await shadow_tables.drop_schemas(settings, plan.schema)
    conn = await db.connect(settings, role="owner")
    try:
        await conn.execute(
            "DELETE FROM processor_offsets WHERE consumer_group = $1", plan.shadow_group
        )
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.rebuild_view", description=__doc__)
    parser.add_argument("processor", help=f"one of {sorted(VIEW_TABLES)}")
    parser.add_argument(
        "--table",
        action="append",
        dest="tables",
        help="a view table to rebuild (repeatable); default: the processor's known tables",
    )
    parser.add_argument(
        "--lake",
        choices=("aged-out", "all", "none"),
        default="aged-out",
        help="lake rows to replay before the topics: those the topic no longer holds "
        "(default), all of them, or none",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds before it gives up, changing nothing (default 900)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    tables = tuple(args.tables or VIEW_TABLES.get(args.processor, ()))
    try:
        if not tables:
            raise LearnstreamError(f"no known view tables for {args.processor!r}; use --table")
        plan = make_plan(settings, args.processor, tables)
        counts = asyncio.run(row_counts(settings, plan))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"rebuild {plan.processor} (consumer group {plan.consumer_group}) into {plan.schema}:")
    print(f"  read from the start  {len(plan.partitions):>8,} partitions of", end=" ")
    print(", ".join(plan.topics), f"(lake: {args.lake})")
    for table in plan.tables:
        print(f"  replace {table:<24} {counts[table]:>12,} rows now (they serve until the swap)")
    print(f"  then the group's offsets ({counts['processor_offsets']:,} rows), in one transaction")
    if args.dry_run:
        print("dry run: nothing changed")
        return
    if not args.yes and input("type the processor name to go on: ").strip() != args.processor:
        print("nothing changed")
        raise SystemExit(1)
    try:
        figures = asyncio.run(rebuild(settings, plan, args.lake, timeout_s=args.timeout))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    rows = ", ".join(f"{t} {figures[t]:,}" for t in plan.tables)
    print(f"done in {figures['seconds']} s: {rows} rows. The workers kept running throughout.")


if __name__ == "__main__":
    main()
