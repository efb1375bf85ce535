"""Operator views: fraud alerts with a review action, and the health of the pipeline.

Fraud alerts are the flagged rows of the fraud processor's ``fraud_signals`` view (score
at or above ``fraud_alert_threshold``) with the per-signal reasons it stored. An
operator confirms or dismisses each; the decision goes to ``fraud_reviews`` (latest
decision per alert, the processor's view is not touched) and to the audit log.

Pipeline health is deployment-wide (it holds offsets and counts, no tenant data): per
consumer group of this deployment (``<kafka_topic_namespace>.<processor>``) and topic,
the next offsets the processors committed to ``processor_offsets`` with the time of
the last commit, against the broker's end offsets (ListOffsets, latest). On Apache
Kafka that difference is the consumer lag. On the local Tansu broker ListOffsets
answers the base offset of the last record batch (see :mod:`processors.lag`), so the
lag shown there can be short, never too long; the processors' own gauges, read from
their ``/metrics`` pages when ``processor_metrics_urls`` names them, use the fetch
high watermark as well and are exact once a worker fetched.

Each group also carries ``problems``: rows that went missing while offsets stayed. A
partition whose committed next offset lies beyond the broker's end (the topic was
recreated, or a broker lost its log) is confirmed by reading the record just below the
committed offset (Tansu's ListOffsets can be short, so a low answer alone proves
nothing); and a group that committed records while its view that every applied record
writes (:data:`FILLED_BY_EVERY_RECORD`) is empty (a view truncated or restored without
its offsets): its workers would skip every record again and never refill it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # stubs omit the re-export
from prometheus_client.parser import text_string_to_metric_families

from api.exceptions import NotFoundError
from api.pagination import encode_cursor
from api.services import audit
from api.services.principals import Principal
from learnstream.db import Queryable
from learnstream.kafka import admin_client, consumer_config
from learnstream.settings import Settings

# Seconds the broker and each metrics page get to answer one health request.
BROKER_TIMEOUT_S = 3.0
METRICS_TIMEOUT_S = 2.0
LAG_METRIC = "learnstream_processor_consumer_lag"
# Processor -> a view table every applied record adds a row to: committed offsets with
# that table empty mean the rows went missing (other views may rightly stay empty).
FILLED_BY_EVERY_RECORD = {"learner_state": "attempts"}
STALLED_METRIC = "learnstream_processor_partition_stalled"


class SubjectKind(StrEnum):
    """What a fraud alert is about: one answer, or a whole session."""

    ATTEMPT = "attempt"
    SESSION = "session"


class Decision(StrEnum):
    """An operator's decision on an alert."""

    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class AlertStatus(StrEnum):
    """Filter of the alert list: not yet reviewed, by decision, or every alert."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class FraudReason:
    """One signal behind an alert: its name, weight in [0, 1] and a readable detail."""

    signal: str
    weight: float
    detail: str


@dataclass(frozen=True, slots=True)
class Review:
    decision: Decision
    note: str
    reviewed_by: str | None
    reviewed_at: datetime


@dataclass(frozen=True, slots=True)
class FraudAlert:
    """A flagged attempt or session; ``score`` in [0, 1]; ``occurred_at`` UTC."""

    subject_kind: SubjectKind
    subject_id: str
    user_id: str
    session_id: str
    item_id: str
    device_id: str
    occurred_at: datetime
    score: float
    reasons: list[FraudReason]
    review: Review | None


def reasons_from_json(raw: Any) -> list[FraudReason]:
    """The stored reasons (``[{"signal", "weight", "detail"}, ...]``), heaviest first."""
    items = json.loads(raw) if isinstance(raw, str) else raw
    found = [
        FraudReason(str(r.get("signal", "")), float(r.get("weight", 0.0)), str(r.get("detail", "")))
        for r in items or []
    ]
    found.sort(key=lambda r: (-r.weight, r.signal))
    return found


def alert_cursor(alert: FraudAlert) -> str:
    """The opaque cursor after ``alert`` in the newest-first order."""
    return encode_cursor(
        f"{alert.occurred_at.isoformat()}|{alert.subject_kind.value}|{alert.subject_id}"
    )


def parse_alert_cursor(key: str) -> tuple[datetime, str, str]:
    """Inverse of the key inside :func:`alert_cursor`; ValueError if it is not one."""
    moment, kind, subject = key.split("|", 2)
    return datetime.fromisoformat(moment), SubjectKind(kind).value, subject


def _alert_from_row(row: Any) -> FraudAlert:
    review = None
    if row["decision"] is not None:
        review = Review(
            Decision(row["decision"]),
            row["note"],
            str(row["reviewed_by"]) if row["reviewed_by"] else None,
            row["reviewed_at"],
        )
    return FraudAlert(
        subject_kind=SubjectKind(row["subject_kind"]),
        subject_id=row["subject_id"],
        user_id=row["user_id"],
        session_id=row["session_id"],
        item_id=row["item_id"],
        device_id=row["device_id"],
        occurred_at=row["occurred_at"],
        score=row["score"],
        reasons=reasons_from_json(row["reasons"]),
        review=review,
    )


_ALERT_ROWS = """
    SELECT f.subject_kind, f.subject_id, f.user_id, f.session_id, f.item_id, f.device_id,
           f.occurred_at, f.score, f.reasons,
           r.decision, r.note, r.reviewed_by, r.reviewed_at
    FROM fraud_signals f
    LEFT JOIN fraud_reviews r USING (tenant_id, subject_kind, subject_id)
    WHERE f.tenant_id = $1 AND f.flagged
"""
_ALERTS = (
    _ALERT_ROWS
    + """
      AND ($2 = 'all' OR ($2 = 'open' AND r.decision IS NULL) OR r.decision = $2)
      AND ($3::timestamptz IS NULL
           OR (f.occurred_at, f.subject_kind, f.subject_id) < ($3, $4, $5))
    ORDER BY f.occurred_at DESC, f.subject_kind DESC, f.subject_id DESC
    LIMIT $6
"""
)
_ALERT = _ALERT_ROWS + " AND f.subject_kind = $2 AND f.subject_id = $3"


async def fraud_alerts(
    db: Queryable,
    *,
    tenant_id: str,
    status: AlertStatus,
    after: tuple[datetime, str, str] | None,
    limit: int,
) -> list[FraudAlert]:
    """Flagged alerts of the tenant, newest first, filtered by review status."""
    moment, kind, subject = after if after is not None else (None, None, None)
    rows = await db.fetch(_ALERTS, tenant_id, status.value, moment, kind, subject, limit)
    return [_alert_from_row(row) for row in rows]


async def review_alert(
    db: Queryable,
    principal: Principal,
    *,
    subject_kind: SubjectKind,
    subject_id: str,
    decision: Decision,
    note: str,
    now: datetime,
) -> FraudAlert:
    """Record ``decision`` on a flagged alert of the caller's tenant (the latest wins).

    NotFoundError when the tenant has no such flagged alert. Audited.
    """
    tenant_id = principal.tenant_id
    stored = await db.fetchval(
        """
        INSERT INTO fraud_reviews (tenant_id, subject_kind, subject_id, user_id, decision,
                                   note, reviewed_by, reviewed_at)
        SELECT tenant_id, subject_kind, subject_id, user_id, $4, $5, $6, $7
        FROM fraud_signals
        WHERE tenant_id = $1 AND subject_kind = $2 AND subject_id = $3 AND flagged
        ON CONFLICT (tenant_id, subject_kind, subject_id) DO UPDATE
            SET decision = EXCLUDED.decision, note = EXCLUDED.note,
                reviewed_by = EXCLUDED.reviewed_by, reviewed_at = EXCLUDED.reviewed_at
        RETURNING subject_id
        """,
        tenant_id,
        subject_kind.value,
        subject_id,
        decision.value,
        note,
        principal.subject_id,
        now,
    )
    if stored is None:
        raise NotFoundError(
            "no fraud alert with this id in your tenant",
            field="path.subject_id",
            reason="not found",
        )
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=("user", principal.subject_id),
        action=audit.Action.FRAUD_ALERT_REVIEWED,
        outcome=audit.Outcome.SUCCESS,
        target_id=subject_id,
        details={"subject_kind": subject_kind.value, "decision": decision.value},
    )
    return _alert_from_row(await db.fetchrow(_ALERT, tenant_id, subject_kind.value, subject_id))


# --- pipeline health --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicLag:
    """One consumer group on one topic: committed offsets against the broker's end.

    ``end_offset``/``lag`` are None when the broker did not answer; ``last_commit_at``
    is UTC and ``seconds_since_commit`` counts from the request's ``now``.
    """

    topic: str
    partitions: int
    committed: int  # sum of next offsets stored in processor_offsets
    end_offset: int | None  # sum of the partitions' end offsets
    lag: int | None  # sum over partitions of max(end - next, 0)
    last_commit_at: datetime
    seconds_since_commit: float


@dataclass(frozen=True, slots=True)
class GroupHealth:
    consumer_group: str
    processor: str
    topics: list[TopicLag]
    lag: int | None
    # Rows gone while offsets stayed (see the module docstring); empty when healthy.
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """What one processor worker's /metrics page said (lag per processor and topic)."""

    url: str
    reachable: bool
    error: str | None
    lag: dict[str, int]  # "<processor> <topic>" -> records
    stalled_partitions: int


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    generated_at: datetime
    broker_reachable: bool
    broker_error: str | None
    groups: list[GroupHealth]
    workers: list[WorkerMetrics]


def group_lags(
    rows: Sequence[Mapping[str, Any]],
    end_offsets: Mapping[tuple[str, int], int] | None,
    *,
    namespace: str,
    now: datetime,
) -> list[GroupHealth]:
    """Fold ``processor_offsets`` rows and the broker's end offsets into per-group lags.

    ``end_offsets`` maps (topic, partition) to the end offset, None if the broker did
    not answer. A partition whose end offset is unknown makes its topic's lag unknown.
    """
    per_topic: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        per_topic.setdefault((row["consumer_group"], row["topic"]), []).append(row)
    groups: dict[str, list[TopicLag]] = {}
    for (group, topic), parts in sorted(per_topic.items()):
        ends = [
            None if end_offsets is None else end_offsets.get((topic, int(p["partition"])))
            for p in parts
        ]
        known = all(e is not None for e in ends)
        last = max(p["updated_at"] for p in parts)
        groups.setdefault(group, []).append(
            TopicLag(
                topic=topic,
                partitions=len(parts),
                committed=sum(int(p["next_offset"]) for p in parts),
                end_offset=sum(e for e in ends if e is not None) if known else None,
                lag=sum(
                    max(int(e) - int(p["next_offset"]), 0)
                    for e, p in zip(ends, parts, strict=True)
                    if e is not None
                )
                if known
                else None,
                last_commit_at=last,
                seconds_since_commit=max((now - last).total_seconds(), 0.0),
            )
        )
    prefix = f"{namespace}."
    return [
        GroupHealth(
            consumer_group=group,
            processor=group.removeprefix(prefix),
            topics=topics,
            lag=None if any(t.lag is None for t in topics) else sum(t.lag or 0 for t in topics),
        )
        for group, topics in groups.items()
    ]


def worker_metrics(url: str, text: str) -> WorkerMetrics:
    """Sum the lag and stall gauges of one /metrics page by processor and topic."""
    lag: dict[str, int] = {}
    stalled = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAG_METRIC:
                key = f"{sample.labels.get('processor', '')} {sample.labels.get('topic', '')}"
                lag[key] = lag.get(key, 0) + int(sample.value)
            elif sample.name == STALLED_METRIC and sample.value >= 1:
                stalled += 1
    return WorkerMetrics(url, True, None, dict(sorted(lag.items())), stalled)


async def _scrape(client: httpx.AsyncClient, url: str) -> WorkerMetrics:
    try:
        response = await client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return WorkerMetrics(url, False, f"{type(exc).__name__}: {exc}", {}, 0)
    return worker_metrics(url, response.text)


def _end_offsets(
    settings: Settings, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """End offsets (ListOffsets, latest) of ``partitions``; KafkaException if unanswered."""
    if not partitions:
        return {}
    admin = admin_client(settings)
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in the stubs
    futures = admin.list_offsets(
        {TopicPartition(topic, p): latest for topic, p in partitions},
        request_timeout=BROKER_TIMEOUT_S,
    )
    ends = {}
    for tp, future in futures.items():
        ends[(tp.topic, tp.partition)] = int(future.result(timeout=BROKER_TIMEOUT_S).offset)
    return ends


async def pipeline_health(db: Queryable, settings: Settings, *, now: datetime) -> PipelineHealth:
    """Consumer lag per processor of this deployment, and what the workers' gauges say."""
    rows = await db.fetch(
        """
        SELECT consumer_group, topic, partition, next_offset, updated_at
        FROM processor_offsets WHERE starts_with(consumer_group, $1)
        ORDER BY consumer_group, topic, partition
        """,
        f"{settings.kafka_topic_namespace}.",
    )
    partitions = sorted({(r["topic"], int(r["partition"])) for r in rows})
    broker_error = None
    ends: dict[tuple[str, int], int] | None
    try:
        ends = await asyncio.wait_for(
            asyncio.to_thread(_end_offsets, settings, partitions), timeout=BROKER_TIMEOUT_S + 2
        )
    except (KafkaException, TimeoutError) as exc:
        ends, broker_error = None, f"{type(exc).__name__}: {exc}"
    urls = [u.strip() for u in settings.processor_metrics_urls.split(",") if u.strip()]
    async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_S) as client:
        workers = list(await asyncio.gather(*(_scrape(client, url) for url in urls)))
    groups = group_lags(rows, ends, namespace=settings.kafka_topic_namespace, now=now)
    suspects = [
        (r["consumer_group"], r["topic"], int(r["partition"]), int(r["next_offset"]))
        for r in rows
        if ends is not None and ends.get((r["topic"], int(r["partition"])), 0) < r["next_offset"]
    ]
    gone: list[tuple[str, str, int, int]] = []
    if suspects:
        try:
            gone = await asyncio.wait_for(
                asyncio.to_thread(_missing_records, settings, suspects),
                timeout=BROKER_TIMEOUT_S * 2 + 2,
            )
        except (KafkaException, TimeoutError):
            gone = []  # the lag above already says the broker is not answering
    problems: dict[str, list[str]] = {}
    for group_id, topic, partition, committed in gone:
        problems.setdefault(group_id, []).append(
            f"{topic}[{partition}]: committed offset {committed:,} but the topic holds no "
            f"record at {committed - 1:,} (recreated topic or lost log); rebuild the view"
        )
    for health in groups:
        table = FILLED_BY_EVERY_RECORD.get(health.processor)
        total = sum(t.committed for t in health.topics)
        if table and total and not await db.fetchval(f"SELECT EXISTS (SELECT FROM {table})"):
            problems.setdefault(health.consumer_group, []).append(
                f"view {table} is empty although {total:,} records are committed: its "
                "rows went missing and the workers will not re-apply them; rebuild the view "
                "(docs/operations.md)"
            )
    return PipelineHealth(
        generated_at=now,
        broker_reachable=broker_error is None,
        broker_error=broker_error,
        groups=[replace(g, problems=problems.get(g.consumer_group, [])) for g in groups],
        workers=workers,
    )


def _missing_records(
    settings: Settings, suspects: Sequence[tuple[str, str, int, int]]
) -> list[tuple[str, str, int, int]]:
    """The suspects whose record just below the committed offset cannot be read.

    Reads with an assigned consumer (no group join); a record at ``next - 1`` or beyond
    proves the log still reaches the committed offset.
    """
    consumer = Consumer(
        {**consumer_config(settings, f"{settings.kafka_topic_namespace}.operator-probe"),
         "enable.partition.eof": True}
    )  # fmt: skip
    missing = []
    try:
        for group, topic, partition, committed in suspects:
            consumer.assign([TopicPartition(topic, partition, max(committed - 1, 0))])
            found = False
            for message in consumer.consume(1, timeout=BROKER_TIMEOUT_S):
                found = message.error() is None and (message.offset() or 0) >= committed - 1
            if not found:
                missing.append((group, topic, partition, committed))
            consumer.unassign()
    finally:
        consumer.close()
    return missing
