"""The machinery every processor shares: batches, one PostgreSQL transaction each, offsets.

A processor (:class:`Processor`) only says how to decode a record and how to
apply a batch of decoded events to its views, and declares its :class:`Flow`.
:class:`BatchRunner` does the rest; :func:`processors.worker.attach` feeds it the
batches of a Faust app and acks them.

Exactly-once effect, per batch, in ONE PostgreSQL transaction:

1. lock the batch's ``processor_offsets`` rows (``SELECT ... FOR UPDATE``; a row
   missing for a new partition is inserted first, so two workers racing over a
   rebalance serialise on it too; :mod:`processors.offset_store`);
2. skip every record whose offset is below the stored next offset: it was applied
   before a crash, and Kafka redelivers it because its own committed offset lags
   (:func:`processors.offsets.plan_batch`);
3. decode the rest; a record that cannot be decoded is dead-lettered; records of
   erased learners (``privacy_tombstones``, one query per batch under shared advisory
   locks, :mod:`learnstream.privacy`) are dropped: counted, never applied nor
   dead-lettered, their offsets stored like the others';
4. apply the decoded events on the same connection (the processor's view writes);
   if the batch raises a non-transient error, it is re-applied one event at a time,
   each under a savepoint, and the events that still fail are dead-lettered;
5. publish dead-letter and derived records and wait for the broker's acks;
6. store ``next_offset = last applied offset + 1`` per partition, and commit.

Kafka's committed offset never passes PostgreSQL's (the worker acks a batch only
after step 6; :mod:`processors.worker` says how), so after a ``kill -9`` Kafka
redelivers from an older offset and step 2 drops what was already applied: nothing is
lost or counted twice. A batch retrying against an unreachable service while the
worker stops gives up (:class:`BatchAbandoned`), and the next worker redoes it.

Offset gaps. A record beyond the stored offset should not happen, yet it was seen
on the local broker after a two-worker takeover (the survivor started a partition
far past PostgreSQL's offset; not reproduced on demand). Applying it would lose the
records in between, so the partition's records are held back (not applied, not
acked) and the consumer is seeked back to the stored offset, now that fetching runs
(:func:`processors.offsets.hold_back_gaps`). A re-read that still starts beyond it
means the topic has a real hole (compaction, retention): then it is applied and
logged as an offset gap.

Derived and dead-letter records are published BEFORE the commit (step 5), not
after: published after the commit, a crash between the two would lose them for
good (their offsets are stored, so they are never reprocessed). Before the
commit a crash can only repeat them, and repeats are identical (same state in,
same deterministic event_id out, see :func:`processors.offsets.derived_event_id`),
so consumers drop them by event_id: at-least-once, never at-most-once.

Transient errors (PostgreSQL or Kafka unreachable, see :func:`is_transient`)
roll the transaction back and retry the whole batch with exponential backoff
(each retry logged) until the service answers; offsets never move meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

import asyncpg

from learnstream import db
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import AsyncProducer, OutgoingRecord, Stream
from learnstream.privacy import ErasedLearners, Learner, learner_of_key, lock_learners
from learnstream.settings import Settings
from processors import metrics
from processors.exceptions import DeliveryFailed, StaleWrite
from processors.lag import PartitionMonitor
from processors.offset_store import lock_offsets, read_offsets, store_offsets
from processors.offsets import (
    BatchPlan,
    HeldBack,
    Rewind,
    SourceRecord,
    TopicPartition,
    deadletter_record,
    hold_back_gaps,
    partitions_of,
    plan_batch,
)

log = logging.getLogger(__name__)

EventT = TypeVar("EventT")


@dataclass(frozen=True, slots=True)
class Flow:
    """What a processor reads, writes and emits: its place in the pipeline, in one place.

    Every processor class declares one (``flow = Flow(...)``, ``sources = flow.reads``);
    docs/architecture.md's table of processors is checked against these declarations
    (tests/unit/processors/test_flows.py). ``processor_offsets`` and the dead-letter
    topic are the runner's and every processor's, so no declaration lists them.
    """

    reads: tuple[Stream, ...]  # the streams consumed
    writes: tuple[str, ...]  # PostgreSQL tables written ("lake" for the Parquet lake)
    emits: tuple[Stream, ...] = ()  # the streams derived events are published to


@dataclass(frozen=True, slots=True)
class Decoded(Generic[EventT]):
    """A decoded event and the record it came from (for offsets, keys and logs)."""

    record: SourceRecord
    event: EventT


class Processor(Protocol[EventT]):
    """What a processor supplies; :class:`BatchRunner` does the rest.

    ``apply`` runs inside the batch's transaction and must write only through
    ``conn``; it returns the derived records to publish. It may be called again
    for the same events after a rollback, so it must not keep state between
    calls, and the records it returns must be a pure function of the events and
    the database state (deterministic event ids).
    """

    @property
    def name(self) -> str:
        """Short name, e.g. ``learner_state``: the CLI argument and the dead-letter header."""
        ...

    @property
    def flow(self) -> Flow:
        """What it reads, writes and emits."""
        ...

    @property
    def sources(self) -> tuple[Stream, ...]:
        """The streams it consumes: ``flow.reads``."""
        ...

    def decode(self, record: SourceRecord) -> EventT:
        """The record's event; raises PoisonEvent when it is unusable."""
        ...

    def event_id(self, event: EventT) -> str:
        """The event's id, for logs."""
        ...

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[EventT]]
    ) -> list[OutgoingRecord]:
        """Write the effect of ``batch`` (in order) through ``conn``; return derived records."""
        ...


@runtime_checkable
class CommitListener(Protocol):
    """A processor that also wants to act once a batch has committed (e.g. refresh a cache).

    ``committed`` gets the batch's decoded events (dead-lettered ones may be among
    them) and a connection outside any transaction, so it reads committed state. It
    runs at most once per committed batch, not at all after a crash, and its errors
    are logged, never retried: keep it to best-effort side effects such as caches.
    """

    async def committed(self, conn: asyncpg.Connection, events: Sequence[Any]) -> None:
        """React to a committed batch."""
        ...


@runtime_checkable
class ClosableProcessor(Protocol):
    """A processor holding its own resources (a Redis pool, a connection)."""

    async def close(self) -> None:
        """Release them; called once when the worker stops."""
        ...


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch did."""

    applied: int
    redelivered: int
    deadlettered: int
    derived: int
    # Stored next offset of every partition the batch touched.
    next_offsets: Mapping[TopicPartition, int]
    retries: int
    # Offset gaps: partitions whose records were held back (neither applied nor to be
    # acked), and the rewinds to start now (seek the consumer back).
    held_back: frozenset[TopicPartition] = frozenset()
    seeks: tuple[Rewind, ...] = ()
    # Records of erased learners, dropped unapplied.
    erased: int = 0


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may fix: PostgreSQL or Kafka unreachable, restarting, busy.

    Data errors (a constraint violated, a bad value) are not transient: retrying
    the same statement fails the same way.
    """
    # StaleWrite: another writer changed a row since it was read; a fresh read fixes it.
    if isinstance(exc, ServiceUnavailableError | OSError | TimeoutError | StaleWrite):
        return True
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.TransactionRollbackError,
    ):
        return True
    # asyncpg reports a connection lost mid-query as an InterfaceError; other
    # InterfaceErrors are programming errors and must not be retried forever.
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


class BatchAbandoned(Exception):
    """The worker is stopping while a batch waits for a service; nothing was committed."""


class BatchRunner(Generic[EventT]):
    """Applies batches of one processor with exactly-once effect (see the module docstring).

    The pool and the producer are created on first use, so a runner can be built
    while PostgreSQL or Kafka is still down; :meth:`close` releases both.
    """

    def __init__(
        self,
        processor: Processor[EventT],
        settings: Settings,
        *,
        consumer_group: str,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        started_at: float | None = None,
        stopping: Callable[[], bool] = lambda: False,
        hold_back_gaps: bool = True,
    ) -> None:
        self.processor = processor
        self.settings = settings
        self.consumer_group = consumer_group
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        # time.monotonic() when the process started; the first batch logs the delay.
        self.started_at = started_at
        # True once the worker is stopping: transient retries give up (BatchAbandoned).
        self.stopping = stopping
        # False for replays that feed records with known holes (infra.rebuild_view feeding
        # lake rows): a gap is then applied and logged, never held back for a re-read.
        self.hold_back_gaps = hold_back_gaps
        # Exact (no "not erased" cache): a learner erased a moment ago must not come back.
        self.erased = ErasedLearners(not_erased_ttl_s=0)
        self._deadletter_topic = settings.topic(Stream.DEADLETTER)
        self._pool: asyncpg.Pool | None = None
        self._producer: AsyncProducer | None = None
        self._known_rows: set[TopicPartition] = set()
        # Offset gaps waiting for the consumer to re-read (processors.offsets.hold_back_gaps).
        self._rewinds: dict[TopicPartition, Rewind] = {}
        self._first_batch_done = False
        # Told of every commit; attach() samples it for the lag and liveness gauges.
        self.monitor = PartitionMonitor(
            processor.name, stall_after_s=settings.processor_stall_after_s
        )

    async def process(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        """Apply ``records`` (a consumed batch, in order) and commit; retry transient errors.

        Returns once PostgreSQL committed; raises only on a non-transient error of
        the machinery itself (per-record errors are dead-lettered instead).
        """
        started = time.monotonic()
        retries = 0
        while True:
            try:
                outcome = await self._process_once(records, retries)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.stopping():
                    # Nothing of this batch is committed; the next worker redoes it.
                    raise BatchAbandoned(f"stopping after {retries + 1} failed tries") from exc
                retries += 1
                delay = min(self.retry_initial_s * 2 ** (retries - 1), self.retry_max_s)
                metrics.RETRIES.labels(self.processor.name).inc()
                log.warning(
                    "transient error; batch rolled back, retrying",
                    extra={
                        "processor": self.processor.name,
                        "retry": retries,
                        "delay_s": delay,
                        "error": f"{type(exc).__name__}: {exc}",
                        "batch_origin": records[0].origin if records else None,
                    },
                )
                await asyncio.sleep(delay)
        self._record_metrics(outcome, records, time.monotonic() - started)
        return outcome

    async def warm_up(self) -> None:
        """Open the pool and the producer now, while the consumer group is still forming.

        Saves the first batch about a second. A service that is down is only
        logged: :meth:`process` retries until it answers.
        """
        try:
            await self._ensure_pool()
            self._ensure_producer()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "could not connect yet; the first batch will retry",
                extra={"processor": self.processor.name, "error": f"{type(exc).__name__}: {exc}"},
            )

    async def close(self) -> None:
        """Release the pool, flush the producer, and close the processor's own resources."""
        if isinstance(self.processor, ClosableProcessor):
            await self.processor.close()
        if self._producer is not None:
            unsent = await asyncio.to_thread(self._producer.close, 5.0)
            if unsent:
                log.warning("producer closed with unsent records", extra={"unsent": unsent})
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _process_once(self, records: Sequence[SourceRecord], retry: int) -> BatchOutcome:
        pool = await self._ensure_pool()
        tps = partitions_of(records)
        async with pool.acquire() as conn, conn.transaction():
            stored = await lock_offsets(conn, self.consumer_group, tps, known=self._known_rows)
            planned = plan_batch(records, stored)
            if self.hold_back_gaps:
                held = hold_back_gaps(planned, self._rewinds)
            else:
                held = HeldBack(planned, {}, (), frozenset())
            plan = held.plan
            self._log_gaps(plan)
            decoded, deadletters = self._decode(plan.fresh)
            decoded, erased = await self._drop_erased(conn, decoded)
            derived, failed = await self._apply(conn, decoded)
            deadletters.extend(failed)
            await self._publish([*deadletters, *derived])
            if plan.next_offsets:
                await store_offsets(conn, self.consumer_group, plan.next_offsets)
        # Only now, after the commit, are the rows certain to exist.
        self._known_rows.update(tps)
        self._rewinds = held.pending
        self._log_rewinds(held)
        self.monitor.committed(plan.next_offsets)
        if decoded and isinstance(self.processor, CommitListener):
            await self._notify_committed(pool, decoded)
        return BatchOutcome(
            applied=len(plan.fresh) - len(deadletters) - erased,
            redelivered=len(plan.redelivered),
            deadlettered=len(deadletters),
            derived=len(derived),
            next_offsets={**stored, **plan.next_offsets},
            retries=retry,
            held_back=held.held_back,
            seeks=held.seeks,
            erased=erased,
        )

    async def _drop_erased(
        self, conn: asyncpg.Connection, decoded: list[Decoded[EventT]]
    ) -> tuple[list[Decoded[EventT]], int]:
        """The events of learners not erased, and how many were dropped.

        Shared advisory locks on the batch's learners first (held to the commit), so an
        erasure cannot commit between this check and the batch's writes.
        """
        learners = {_learner(item) for item in decoded} - {None}
        if not learners:
            return decoded, 0
        known = cast("set[Learner]", learners)
        await lock_learners(conn, known, exclusive=False)
        erased = await self.erased.among(conn, known)
        if not erased:
            return decoded, 0
        kept = [item for item in decoded if _learner(item) not in erased]
        dropped = len(decoded) - len(kept)
        log.info(
            "dropped records of erased learners",
            extra={"processor": self.processor.name, "records": dropped},
        )
        return kept, dropped

    async def stored_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offsets stored in ``processor_offsets`` for ``tps`` (no lock taken)."""
        return await read_offsets(await self._ensure_pool(), self.consumer_group, tps)

    async def _notify_committed(self, pool: asyncpg.Pool, decoded: list[Decoded[EventT]]) -> None:
        assert isinstance(self.processor, CommitListener)
        learners = cast("set[Learner]", {_learner(item) for item in decoded} - {None})
        try:
            # Under the shared locks again: an erasure waits until a cache refresh has
            # written, then deletes the keys; one that committed first left no rows to read.
            async with pool.acquire() as conn, conn.transaction():
                await lock_learners(conn, learners, exclusive=False)
                await self.processor.committed(conn, [item.event for item in decoded])
        except Exception as exc:
            log.warning(
                "after-commit step failed (the batch itself is committed)",
                extra={"processor": self.processor.name, "error": f"{type(exc).__name__}: {exc}"},
            )

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await db.create_pool(self.settings, max_size=2)
        return self._pool

    def _ensure_producer(self) -> AsyncProducer:
        if self._producer is None:
            self._producer = AsyncProducer(self.settings)
        return self._producer

    def _decode(
        self, records: Sequence[SourceRecord]
    ) -> tuple[list[Decoded[EventT]], list[OutgoingRecord]]:
        decoded: list[Decoded[EventT]] = []
        deadletters: list[OutgoingRecord] = []
        for record in records:
            try:
                decoded.append(Decoded(record, self.processor.decode(record)))
            except Exception as exc:
                # PoisonEvent, or a decoder bug that this record triggers: either way the
                # record is kept on the dead-letter topic and the partition moves on.
                deadletters.append(self._deadletter(record, exc, event_id=None))
        return decoded, deadletters

    async def _apply(
        self, conn: asyncpg.Connection, decoded: Sequence[Decoded[EventT]]
    ) -> tuple[list[OutgoingRecord], list[OutgoingRecord]]:
        """Apply the batch; on a non-transient error, event by event. Returns (derived, dead)."""
        if not decoded:
            return [], []
        try:
            async with conn.transaction():  # a savepoint: undo only this batch's writes
                return await self.processor.apply(conn, decoded), []
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning(
                "batch failed; applying its events one by one to isolate the bad ones",
                extra={
                    "processor": self.processor.name,
                    "error": f"{type(exc).__name__}: {exc}",
                    "batch_origin": decoded[0].record.origin,
                    "events": len(decoded),
                },
            )
        derived: list[OutgoingRecord] = []
        deadletters: list[OutgoingRecord] = []
        for item in decoded:
            try:
                async with conn.transaction():
                    derived.extend(await self.processor.apply(conn, [item]))
            except Exception as exc:
                if is_transient(exc):
                    raise
                event_id = self.processor.event_id(item.event)
                deadletters.append(self._deadletter(item.record, exc, event_id=event_id))
        return derived, deadletters

    def _deadletter(
        self, record: SourceRecord, exc: Exception, *, event_id: str | None
    ) -> OutgoingRecord:
        error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "dead-lettering record",
            extra={
                "processor": self.processor.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "event_id": event_id,
                "error": error,
            },
        )
        return deadletter_record(
            record,
            error=error,
            processor=self.processor.name,
            deadletter_topic=self._deadletter_topic,
        )

    async def _publish(self, records: list[OutgoingRecord]) -> None:
        if not records:
            return
        deliveries = await self._ensure_producer().publish(records)
        failed = [d.error for d in deliveries if not d.ok]
        if failed:
            raise DeliveryFailed(f"{len(failed)} of {len(records)} records not acked: {failed[0]}")

    def _log_rewinds(self, held: HeldBack) -> None:
        for rewind in held.seeks:
            log.error(
                "offset gap: records beyond the stored next offset were received (the consumer "
                "skipped records); holding them back and rewinding to the stored offset",
                extra={
                    "processor": self.processor.name,
                    "topic": rewind.tp.topic,
                    "partition": rewind.tp.partition,
                    "offset": rewind.dropped_through,
                    "expected_offset": rewind.expected,
                },
            )
        if held.held_records:
            metrics.EVENTS.labels(self.processor.name, "held_back").inc(held.held_records)

    def _log_gaps(self, plan: BatchPlan) -> None:
        for gap in plan.gaps:
            log.error(
                "offset gap: records between the stored next offset and the first "
                "record received were not applied (expected only on topics with holes)",
                extra={
                    "processor": self.processor.name,
                    "topic": gap.tp.topic,
                    "partition": gap.tp.partition,
                    "offset": gap.received,
                    "expected_offset": gap.expected,
                },
            )

    def _record_metrics(
        self, outcome: BatchOutcome, records: Sequence[SourceRecord], seconds: float
    ) -> None:
        name = self.processor.name
        metrics.EVENTS.labels(name, "applied").inc(outcome.applied)
        metrics.EVENTS.labels(name, "deadlettered").inc(outcome.deadlettered)
        metrics.EVENTS.labels(name, "redelivered").inc(outcome.redelivered)
        if outcome.erased:
            metrics.EVENTS.labels(name, "erased").inc(outcome.erased)
        metrics.BATCH_SECONDS.labels(name).observe(seconds)
        metrics.BATCH_SIZE.labels(name).observe(len(records))
        for tp, offset in outcome.next_offsets.items():
            metrics.NEXT_OFFSET.labels(name, tp.topic, str(tp.partition)).set(offset)
        if not self._first_batch_done:
            self._first_batch_done = True
            since_start = None if self.started_at is None else time.monotonic() - self.started_at
            log.info(
                "first batch committed, %s s after the process started",
                "?" if since_start is None else f"{since_start:.2f}",
                extra={
                    "processor": name,
                    "records": len(records),
                    "seconds_since_process_start": since_start,
                },
            )


def _learner(item: Decoded[Any]) -> Learner | None:
    # Every learner stream is keyed tenant:user (decoders check the key against the
    # envelope), so the key names the learner whatever the event type.
    return learner_of_key(item.record.key)
