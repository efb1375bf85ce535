"""The pure half of the exactly-once-effect machinery: which records of a batch to apply.

PostgreSQL's ``processor_offsets`` holds, per (consumer group, topic, partition),
the next offset whose effect is not yet in the database. A record below it was
applied before (Kafka redelivers after a crash, because its own committed offset
lags behind), so it is skipped; every other record is applied once, in order, and
the batch stores ``last applied offset + 1``. The I/O that wraps this rule (row
locks, one transaction per batch, publishing) lives in :mod:`processors.base`.

Also here: deterministic ids for derived events, and the shape of a dead-letter
record, both pure functions of the record that caused them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from google.protobuf.message import DecodeError

from learnstream.events.v1 import envelope_pb2
from learnstream.kafka import (
    DEADLETTER_ERROR_HEADER,
    DEADLETTER_ORIGIN_HEADER,
    DEADLETTER_PROCESSOR_HEADER,
    OutgoingRecord,
    learner_key,
)
from processors.exceptions import PoisonEvent

# Fixed namespace of derived event ids; changing it would change every derived id.
DERIVED_EVENT_NAMESPACE = uuid.UUID("5b7f3c1e-2a4d-5e6f-8a9b-0c1d2e3f4a5b")
_NAMESPACE_BYTES = DERIVED_EVENT_NAMESPACE.bytes
# A UUID already in canonical form (what ingest stamps): str(uuid.UUID(text)) is text.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Dead-letter error text is cut to this many characters (a header, not a log file).
MAX_ERROR_CHARS = 2_000


class LearnerEventMessage(Protocol):
    """A generated event class whose messages carry an Envelope (AttemptEvent, ...)."""

    @property
    def envelope(self) -> envelope_pb2.Envelope: ...


LearnerEventT = TypeVar("LearnerEventT", bound=LearnerEventMessage)


def decode_learner_event(
    record: SourceRecord, message_type: type[LearnerEventT]
) -> tuple[LearnerEventT, str]:
    """Parse ``record`` as ``message_type`` and check its envelope; returns (event, event_id).

    Checked: a value that parses, a UUID event_id (returned in canonical form), tenant
    and user ids, the record key ``tenant:user`` (a learner's events must share a
    partition to stay ordered), and occurred_at. Raises PoisonEvent saying what is wrong.
    """
    if record.value is None:
        raise PoisonEvent("record has no value")
    try:
        event = message_type.FromString(record.value)  # type: ignore[attr-defined]  # generated
    except DecodeError as exc:
        raise PoisonEvent(f"not a valid {message_type.__name__} protobuf: {exc}") from exc
    envelope = event.envelope
    event_id = envelope.event_id
    if _CANONICAL_UUID.fullmatch(event_id) is None:
        try:
            event_id = str(uuid.UUID(event_id))
        except ValueError as exc:
            raise PoisonEvent(f"envelope.event_id {event_id!r} is not a UUID") from exc
    if not envelope.tenant_id or not envelope.user_id:
        raise PoisonEvent(f"event {event_id}: envelope.tenant_id and user_id are required")
    expected_key = learner_key(envelope.tenant_id, envelope.user_id)
    if record.key != expected_key:
        raise PoisonEvent(f"event {event_id}: record key {record.key!r} is not {expected_key!r}")
    if not envelope.HasField("occurred_at"):
        raise PoisonEvent(f"event {event_id}: envelope.occurred_at is required")
    return event, event_id


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One consumed Kafka record, as the processors see it (raw key and value bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def origin(self) -> str:
        """Where the record came from, ``topic[partition]@offset``."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """A partition whose first record lies beyond the stored next offset.

    Harmless when the topic itself has holes (compaction, transaction markers,
    retention); otherwise it means records were consumed past what PostgreSQL
    holds, which the design rules out, so it is logged loudly.
    """

    tp: TopicPartition
    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What to do with one batch: apply ``fresh``, skip ``redelivered``, store ``next_offsets``."""

    fresh: tuple[SourceRecord, ...]
    redelivered: tuple[SourceRecord, ...]
    # Per partition that advanced: the offset to store (last applied + 1).
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    gaps: tuple[OffsetGap, ...] = ()


def partitions_of(records: Iterable[SourceRecord]) -> list[TopicPartition]:
    """The distinct partitions of ``records``, sorted (a fixed lock order avoids deadlocks)."""
    return sorted({record.tp for record in records})


def plan_batch(
    records: Sequence[SourceRecord], stored_next: Mapping[TopicPartition, int]
) -> BatchPlan:
    """Split a batch into records to apply and records already applied.

    ``stored_next`` maps a partition to its stored next offset; a partition with no
    stored row starts at 0 and is not checked for gaps. A record is fresh when its
    offset is at least the partition's running next offset, which starts at the
    stored value and moves past every fresh record, so a record delivered twice in
    one batch is also applied once. Order within a partition is kept.
    """
    running = dict(stored_next)
    fresh: list[SourceRecord] = []
    redelivered: list[SourceRecord] = []
    gaps: list[OffsetGap] = []
    for record in records:
        tp = record.tp
        expected = running.get(tp, 0)
        if record.offset < expected:
            redelivered.append(record)
            continue
        if record.offset > expected and tp in stored_next:
            gaps.append(OffsetGap(tp, expected, record.offset))
        fresh.append(record)
        running[tp] = record.offset + 1
    next_offsets = {tp: offset for tp, offset in running.items() if offset != stored_next.get(tp)}
    return BatchPlan(tuple(fresh), tuple(redelivered), next_offsets, tuple(gaps))


@dataclass(frozen=True, slots=True)
class Rewind:
    """A partition whose records are held back until the consumer re-reads from ``expected``.

    ``dropped_through`` is the highest offset held back so far: records that arrive
    above it are still the ones fetched before the seek; a record at or below it
    means the consumer did re-read from ``expected``.
    """

    tp: TopicPartition
    expected: int
    dropped_through: int


@dataclass(frozen=True, slots=True)
class HeldBack:
    """What :func:`hold_back_gaps` decided for one batch."""

    plan: BatchPlan  # the plan without the held-back records
    pending: dict[TopicPartition, Rewind]  # rewinds still waiting for the re-read
    seeks: tuple[Rewind, ...]  # rewinds to start now (seek the consumer to ``expected``)
    held_back: frozenset[TopicPartition]  # partitions with records left unapplied, unacked
    held_records: int = 0  # how many records were held back


def hold_back_gaps(plan: BatchPlan, pending: Mapping[TopicPartition, Rewind]) -> HeldBack:
    """Hold back the records beyond an offset gap instead of applying them.

    A gap (the first record of a partition lies beyond the stored next offset)
    means the consumer skipped records PostgreSQL never saw: seen on the local
    broker after a takeover. Applying past it would lose them, so the partition's
    records from the gap on are held back and the consumer is rewound to the stored
    offset (one seek per gap; records fetched before the seek keep arriving and
    are held back too). Once the consumer re-reads, records start at the stored
    offset and flow again. If the re-read still starts beyond it, the topic really
    has a hole there (compaction, retention, transaction markers): those records
    are applied and the gap stays in ``plan.gaps`` to be logged.
    """
    still_pending = dict(pending)
    seeks: list[Rewind] = []
    held: dict[TopicPartition, int] = {}  # tp -> first offset held back
    real_holes: list[OffsetGap] = []
    for gap in plan.gaps:
        if gap.tp in held or any(h.tp == gap.tp for h in real_holes):
            continue  # only the first gap of a partition decides
        waiting = still_pending.get(gap.tp)
        reread = (
            waiting is not None
            and waiting.expected == gap.expected
            and gap.received <= waiting.dropped_through
        )
        if reread:
            real_holes.append(gap)
            del still_pending[gap.tp]
        else:
            held[gap.tp] = gap.received
    kept = [r for r in plan.fresh if r.tp not in held or r.offset < held[r.tp]]
    for tp, first_held in held.items():
        dropped_through = max(r.offset for r in plan.fresh if r.tp == tp and r.offset >= first_held)
        expected = next(g.expected for g in plan.gaps if g.tp == tp)
        waiting = still_pending.get(tp)
        if waiting is None or waiting.expected != expected:
            rewind = Rewind(tp, expected, dropped_through)
            seeks.append(rewind)
        else:
            rewind = Rewind(tp, expected, max(waiting.dropped_through, dropped_through))
        still_pending[tp] = rewind
    flowing = {r.tp for r in kept} - set(held)
    for tp in flowing:
        still_pending.pop(tp, None)  # records came from the stored offset on: rewind done
    next_offsets = {tp: o for tp, o in plan.next_offsets.items() if tp not in held}
    for tp in held:
        applied = [r.offset for r in kept if r.tp == tp]
        if applied:
            next_offsets[tp] = max(applied) + 1
    return HeldBack(
        plan=BatchPlan(tuple(kept), plan.redelivered, next_offsets, tuple(real_holes)),
        pending=still_pending,
        seeks=tuple(seeks),
        held_back=frozenset(held),
        held_records=len(plan.fresh) - len(kept),
    )


def derived_event_id(cause_event_id: str, kind: str) -> str:
    """The event_id of the ``kind`` event derived from ``cause_event_id`` (a UUID string).

    A pure function of its arguments: reprocessing the cause after a crash emits
    a record with the same id, so consumers drop the duplicate by event_id.
    """
    # uuid.uuid5 spelt out (SHA-1 of namespace + name, version 5, RFC 4122 variant):
    # the same string at half the cost, one per derived record.
    digest = hashlib.sha1(_NAMESPACE_BYTES + f"{kind}:{cause_event_id}".encode()).hexdigest()
    variant = "89ab"[int(digest[16], 16) & 3]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def deadletter_record(
    record: SourceRecord, *, error: str, processor: str, deadletter_topic: str
) -> OutgoingRecord:
    """The dead-letter copy of ``record``: same key, value and headers, plus why and where.

    Headers added: error text (at most MAX_ERROR_CHARS), origin ``topic[partition]@offset``
    and the processor's name. An absent key or value becomes empty bytes.
    """
    reason = error[:MAX_ERROR_CHARS]
    headers = (
        *record.headers,
        (DEADLETTER_ERROR_HEADER, reason.encode()),
        (DEADLETTER_ORIGIN_HEADER, record.origin.encode()),
        (DEADLETTER_PROCESSOR_HEADER, processor.encode()),
    )
    return OutgoingRecord(
        topic=deadletter_topic,
        key=record.key or b"",
        value=record.value or b"",
        headers=headers,
    )
