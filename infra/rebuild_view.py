"""Rebuild a processor's views from the lake and its topics: ``python -m infra.rebuild_view P``.

What it does, after showing the plan and asking (``--yes`` skips the question,
``--dry-run`` only shows it):

1. joins the processor's consumer group itself (as a Faust member) and refuses unless
   it is assigned every source partition, i.e. no worker of the group is running
   (stop them first: a running worker would keep applying records into the emptied
   views). Joining is the check because it works on any broker (Tansu neither answers
   DescribeGroups for Faust's groups nor lets an admin client alter their offsets);
   running workers only see one extra rebalance;
2. as the group's only member, commits offset 0 for every source partition, so the
   next worker starts reading at the beginning of each topic;
3. in ONE PostgreSQL transaction, empties the processor's view tables (``TRUNCATE``)
   and deletes its ``processor_offsets`` rows, so every record counts as new again.

4. for a processor of lake attempts (:data:`LAKE_FED`), replays the lake's rows
   through the processor's own runner (:class:`processors.base.BatchRunner`, same
   consumer group), which stores the offsets it applied: ``--lake aged-out`` (the
   default) replays the rows the topic no longer holds (offsets below each partition's
   log start, removed by ``topic_retention_ms``), ``--lake all`` every lake row (faster,
   but rows from the lake carry no session id), ``--lake none`` nothing.

Kafka first, PostgreSQL second: if step 3 fails, the workers re-read the topics but
skip every record below the offsets still stored, so nothing changes; run it again.

Then start the workers again (``python -m processors PROCESSOR``); they read the topic
tail from its start and skip what the lake replay applied (offsets below the stored
ones), and the views come back record by record, with the same exactly-once effect as
live processing. Watch the progress with the lag of docs/operations.md.

Erased learners stay erased: the lake replay skips every tombstoned learner's rows
(``privacy_tombstones``; erasure also rewrote the lake), and the runner drops their
records from the lake and the topic tail alike.

Limits: the topics hold what their retention kept and the lake what the lake sink
wrote (attempts only); other source topics (sessions, mastery) are replayed from what
Kafka still holds.
Views other processors derived from these (e.g. recommendations from mastery) are
not rebuilt; rebuild them after this one. The Redis hot cache of learners is
refreshed as their attempts are reapplied; stale entries expire with their TTL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, TopicPartition

from learnstream import db, lake
from learnstream.events.v1 import attempt_pb2
from learnstream.exceptions import LearnstreamError
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    Stream,
    admin_client,
    consumer_config,
    learner_key,
)
from learnstream.privacy import all_tombstones
from learnstream.settings import Settings, get_settings

LakeMode = Literal["aged-out", "all", "none"]
# Processors whose input is exactly what the lake holds (attempts, decoded by
# processors.events.decode_attempt): their history older than the topics is in the lake.
LAKE_FED = frozenset({"learner_state", "aggregates", "predictions"})
_ATTEMPT_TYPE = attempt_pb2.AttemptEvent.DESCRIPTOR.full_name.encode()

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


def source_topics(settings: Settings, processor: str) -> tuple[str, ...]:
    """The topics ``processor`` consumes (from its registration in processors/)."""
    from processors.__main__ import PROCESSORS  # the processors' own registry

    if processor not in PROCESSORS:
        raise LearnstreamError(f"unknown processor {processor!r}; known: {sorted(PROCESSORS)}")
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


async def claim_and_reset_offsets(
    settings: Settings, plan: RebuildPlan, *, timeout_s: float
) -> None:
    """Join the group as a Faust member; if it gets every partition, commit offset 0 to all.

    The member speaks Faust's own assignor (the processor app's), because the broker
    only admits members of the group's protocol (Tansu remembers it even once the group
    is empty). Raises LearnstreamError, committing nothing, when other members keep
    some partitions (its workers run) or no full assignment came within ``timeout_s``
    (a killed worker stays a member until its session times out; this waits for that).
    The assignment must stay whole for two session timeouts before anything is committed.
    """
    from processors.app import create_app

    app = create_app(settings, plan.processor)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=plan.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=[app.assignor],
        session_timeout_ms=int(settings.consumer_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.consumer_heartbeat_interval_s * 1000),
    )
    wanted = {(tp.topic, tp.partition) for tp in plan.partitions}
    await consumer.start()
    try:
        consumer.subscribe(list(plan.topics))
        deadline = time.monotonic() + timeout_s
        # A running worker that missed the rebalance rejoins within its session timeout
        # and takes partitions back; only an assignment that stays whole that long
        # proves the group has no other member.
        settle_s = 2 * settings.consumer_session_timeout_s + 1
        held: set[tuple[str, int]] = set()
        whole_since: float | None = None
        while time.monotonic() < deadline:
            # Drives the group protocol; records fetched are neither kept nor committed.
            await consumer.getmany(timeout_ms=200, max_records=1)
            held = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            if held != wanted:
                whole_since = None
                continue
            whole_since = whole_since or time.monotonic()
            if time.monotonic() - whole_since >= settle_s:
                await consumer.commit({AioTopicPartition(t, p): 0 for t, p in sorted(wanted)})
                return
        raise LearnstreamError(
            f"group {plan.consumer_group} gave this command {len(held)} of {len(wanted)} "
            "partitions: its workers are running. Stop its workers first (a running worker "
            "would keep writing into the emptied views)"
        )
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=15)


async def row_counts(settings: Settings, plan: RebuildPlan) -> dict[str, int]:
    """Rows per view table and of the group's processor_offsets, before the rebuild."""
    conn = await db.connect(settings, role="owner")
    try:
        counts = {
            table: int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
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


async def empty_views(settings: Settings, plan: RebuildPlan) -> None:
    """Truncate the view tables and delete the group's offsets, in one transaction."""
    conn = await db.connect(settings, role="owner")
    try:
        async with conn.transaction():
            tables = ", ".join(f'"{table}"' for table in plan.tables)
            await conn.execute(f"TRUNCATE {tables}")
            await conn.execute(
                "DELETE FROM processor_offsets WHERE consumer_group = $1", plan.consumer_group
            )
    finally:
        await conn.close()


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


async def replay_lake(settings: Settings, plan: RebuildPlan, mode: LakeMode) -> int:
    """Apply the lake's attempts through the processor's runner; returns records replayed.

    Run after :func:`empty_views`, with no worker running: the runner stores the
    offsets it applied, so the workers then skip them on the topic.
    """
    if mode == "none" or plan.processor not in LAKE_FED:
        return 0
    from processors.__main__ import PROCESSORS
    from processors.base import BatchRunner

    topic = settings.topic(Stream.ATTEMPTS)
    below = None
    if mode == "aged-out":
        ids = sorted(tp.partition for tp in plan.partitions if tp.topic == topic)
        below = log_start_offsets(settings, topic, ids)
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
    processor = PROCESSORS[plan.processor](settings)
    runner = BatchRunner(
        processor, settings, consumer_group=plan.consumer_group, hold_back_gaps=False
    )
    try:
        step = settings.processor_batch_max
        for start in range(0, len(records), step):
            await runner.process(records[start : start + step])
    finally:
        await runner.close()
    return len(records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.rebuild_view", description=__doc__)
    parser.add_argument("processor", help=f"one of {sorted(VIEW_TABLES)}")
    parser.add_argument(
        "--table",
        action="append",
        dest="tables",
        help="a view table to empty (repeatable); default: the processor's known tables",
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
        "--join-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the whole group assignment (default 60)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    tables = tuple(args.tables or VIEW_TABLES.get(args.processor, ()))
    if not tables:
        print(
            f"no known view tables for {args.processor!r}; name them with --table", file=sys.stderr
        )
        raise SystemExit(2)
    try:
        plan = make_plan(settings, args.processor, tables)
        counts = asyncio.run(row_counts(settings, plan))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"rebuild {plan.processor} (consumer group {plan.consumer_group}):")
    print(f"  reset Kafka offsets to 0       {len(plan.partitions):>12,} partitions of", end=" ")
    print(", ".join(plan.topics))
    for table in plan.tables:
        print(f"  TRUNCATE {table:<21} {counts[table]:>12,} rows")
    print(f"  DELETE processor_offsets rows  {counts['processor_offsets']:>12,} rows")
    if args.dry_run:
        print("dry run: nothing changed")
        return
    if not args.yes and input("type the processor name to go on: ").strip() != args.processor:
        print("nothing changed")
        raise SystemExit(1)
    try:
        asyncio.run(claim_and_reset_offsets(settings, plan, timeout_s=args.join_timeout))
        asyncio.run(empty_views(settings, plan))
        replayed = asyncio.run(replay_lake(settings, plan, args.lake))
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"replayed {replayed:,} attempts from the lake (erased learners skipped)")
    print(
        f"done. Start the workers again (python -m processors {plan.processor}); "
        "they replay the topics from the beginning, skipping what the lake replay applied."
    )


if __name__ == "__main__":
    main()
