"""One posted batch, end to end: validate, deduplicate, publish, and say what happened.

:class:`BatchIngestor` is what the route calls. The order of work:

1. every event is validated on its own (a bad one never rejects its neighbours),
   stamped (tenant, received_at, canonical event_id) and serialized; an event
   whose record would exceed ``ingest_max_record_bytes`` is rejected here, because
   the broker would refuse it on every retry;
1b. an event of an erased learner (``privacy_tombstones``) is REJECTED with reason
   ``erased``: one PostgreSQL query per batch at most, answers cached
   (:class:`learnstream.privacy.ErasedLearners`; "not erased" for
   ``erasure_cache_ttl_s``, within which the processors still drop it);
2. a repeated event_id inside the batch is a DUPLICATE of its first occurrence;
3. the remaining ids are claimed in Redis (one round trip); ids accepted before
   are DUPLICATE, ids another request is publishing are RETRY_LATER;
4. the claimed records are published; their delivery reports are settled by a
   task of their own (:meth:`BatchIngestor._settle`): each claim becomes "done"
   when the broker stored the record, or is released when librdkafka reports it
   failed for sure (one Redis script call each);
5. the request waits for that task up to ``ingest_delivery_timeout_ms``. If any
   record failed, the answer is 503 + Retry-After: the client retries the batch,
   the delivered events come back DUPLICATE and the rest are published once.
   If the wait runs out first, the answer is 503 too, but the claims stay
   pending: a retry meanwhile gets RETRY_LATER for them, never a second publish;
   once the reports are in, it gets DUPLICATE (stored) or publishes (failed).

If Redis fails when a delivered batch is to be marked done (an outage, a Sentinel
failover), the request still answers ACCEPTED (the broker has the events) and a task
keeps retrying the done marker every :data:`_MARK_DONE_RETRY_S` while the claims are
pending: without it the claims would expire and a later resend of an accepted event
would be published again.

The settle task outlives its request (a client that hangs up, or the wait running
out, must not leave claims undecided), and the app's shutdown waits for it
(:meth:`BatchIngestor.drain`). librdkafka reports every record within
``message.timeout.ms`` (ingest/producer.py); pending claims outlive that.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from ingest.codec import DecodedEvent
from ingest.dedup import ClaimState, DedupKey, DedupStore, DedupUnavailableError, new_claim_token
from ingest.exceptions import DependencyUnavailableError
from ingest.metrics import IngestMetrics
from ingest.validation import (
    EventMessage,
    Limits,
    Violation,
    occurred_window,
    receipt_timestamp,
    stamp_envelope,
    validate_event,
)
from learnstream.apikeys import ApiKey
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    AsyncProducer,
    DeliveryBatch,
    OutgoingRecord,
    ProducerQueueFull,
    Stream,
    learner_key,
)
from learnstream.privacy import ErasedLearners, Learner
from learnstream.settings import Settings

log = logging.getLogger(__name__)

# The topic of each kind of event.
STREAM_OF_KIND = {
    "attempt": Stream.ATTEMPTS,
    "code_submission": Stream.CODE_SUBMISSIONS,
    "session": Stream.SESSIONS,
    "placement": Stream.PLACEMENTS,
    "activity": Stream.ACTIVITY,
}
_Status = ingest_pb2.EventStatus
_StatusValue: TypeAlias = ingest_pb2.EventStatus.ValueType
_OUTCOME_LABEL = {
    _Status.EVENT_STATUS_ACCEPTED: "accepted",
    _Status.EVENT_STATUS_DUPLICATE: "duplicate",
    _Status.EVENT_STATUS_REJECTED: "rejected",
    _Status.EVENT_STATUS_RETRY_LATER: "retry_later",
}


# Seconds between retries of a done marker that Redis did not take.
_MARK_DONE_RETRY_S = 0.5


class _Candidate(NamedTuple):
    """A valid event waiting to be claimed and published (a tuple: one is built per
    event, and a frozen dataclass's __init__ cost a microsecond more)."""

    position: int  # in the batch
    kind: str
    dedup_key: DedupKey
    record: OutgoingRecord
    learner: Learner  # (tenant_id, user_id) of the envelope


class _Answer:
    """The per-event outcome of one batch, kept as plain ints while the batch runs and
    turned into the ``IngestResponse`` once at the end (not one message per event
    built up front and then set field by field)."""

    __slots__ = ("notes", "statuses")

    def __init__(self, size: int) -> None:
        # UNSPECIFIED until decided (a 503 cuts a batch short).
        self.statuses: list[_StatusValue] = [_Status.EVENT_STATUS_UNSPECIFIED] * size
        self.notes: dict[int, tuple[str, str]] = {}  # index -> (field, reason)

    def set(self, index: int, status: _StatusValue, field: str = "", reason: str = "") -> None:
        self.statuses[index] = status
        if field or reason:
            self.notes[index] = (field, reason)

    def response(self, events: Sequence[DecodedEvent]) -> ingest_pb2.IngestResponse:
        response = ingest_pb2.IngestResponse()
        add = response.results.add
        for index, (decoded, status) in enumerate(zip(events, self.statuses, strict=True)):
            add(index=index, event_id=decoded.event_id, status=status)
        for index, (field, reason) in self.notes.items():
            result = response.results[index]
            result.field = field
            result.reason = reason
        count = self.statuses.count
        response.accepted = count(_Status.EVENT_STATUS_ACCEPTED)
        response.duplicates = count(_Status.EVENT_STATUS_DUPLICATE)
        response.rejected = count(_Status.EVENT_STATUS_REJECTED)
        response.retry_later = count(_Status.EVENT_STATUS_RETRY_LATER)
        return response


def build_record(kind: str, message: EventMessage, settings: Settings) -> OutgoingRecord:
    """The Kafka record of one stamped event.

    Topic: the stream of its kind. Key: ``learner_key(tenant_id, user_id)``, so one
    learner's events share a partition. Value: the specific message (e.g.
    AttemptEvent), not the LearningEvent wrapper. Headers: its message type and event_id.
    """
    envelope = message.envelope
    return OutgoingRecord(
        topic=settings.topic(STREAM_OF_KIND[kind]),
        key=learner_key(envelope.tenant_id, envelope.user_id),
        value=message.SerializeToString(),
        headers=(_type_header(kind), (EVENT_ID_HEADER, envelope.event_id.encode())),
    )


@functools.cache
def _type_header(kind: str) -> tuple[str, bytes]:
    """The event-type header of every event of ``kind`` (its full message name)."""
    message_name = getattr(ingest_pb2.LearningEvent(), kind).DESCRIPTOR.full_name
    return EVENT_TYPE_HEADER, message_name.encode()


class BatchIngestor:
    """Runs batches through validation, deduplication and publishing."""

    def __init__(
        self,
        *,
        settings: Settings,
        producer: AsyncProducer,
        dedup: DedupStore,
        metrics: IngestMetrics,
        pool: Any = None,
    ) -> None:
        """``pool`` (asyncpg) answers which learners are erased; None skips that check
        (only for tests of the rest of the pipeline)."""
        self._settings = settings
        self._pool = pool
        self.erased = ErasedLearners(not_erased_ttl_s=settings.erasure_cache_ttl_s)
        self._limits = Limits.from_settings(settings)
        self._producer = producer
        self._dedup = dedup
        self._metrics = metrics
        self._wait_s = settings.ingest_delivery_timeout_ms / 1000
        # Settle tasks still running (a strong reference each, or asyncio may drop them).
        self._settling: set[asyncio.Task[DependencyUnavailableError | None]] = set()

    async def drain(self, timeout_s: float) -> int:
        """On shutdown: wait up to ``timeout_s`` for every delivery to be settled in Redis.

        Returns how many settle tasks were still running (their claims stay pending
        until the pending TTL).
        """
        if not self._settling:
            return 0
        await asyncio.to_thread(self._producer.flush, timeout_s)
        if not self._settling:
            return 0
        _done, running = await asyncio.wait(set(self._settling), timeout=timeout_s)
        if running:
            log.error("shutting down with deliveries unsettled", extra={"batches": len(running)})
        return len(running)

    async def ingest(
        self, events: Sequence[DecodedEvent], *, api_key: ApiKey, now: datetime
    ) -> ingest_pb2.IngestResponse:
        """The answer for one batch posted with ``api_key`` and received at ``now`` (UTC).

        Raises DependencyUnavailableError (503) when Redis or the broker fails;
        then no event of the batch is reported accepted.
        """
        answer = _Answer(len(events))
        # Metrics label: the event's kind when it parsed far enough to have one.
        kinds = [decoded.kind or "event" for decoded in events]
        candidates: list[_Candidate] = []
        first_index: dict[DedupKey, int] = {}
        received_at = receipt_timestamp(now)  # one for the batch, copied into each event
        window = occurred_window(now, self._limits)  # likewise
        for i, decoded in enumerate(events):
            candidate = self._prepare(
                i, decoded, api_key=api_key, now=now, received_at=received_at, window=window
            )
            if isinstance(candidate, Violation):
                self._reject(answer, i, candidate)
                continue
            earlier = first_index.get(candidate.dedup_key)
            if earlier is not None:
                answer.set(
                    i,
                    _Status.EVENT_STATUS_DUPLICATE,
                    reason=f"same event_id as events[{earlier}] of this batch",
                )
                continue
            first_index[candidate.dedup_key] = i
            candidates.append(candidate)

        try:
            if candidates and self._pool is not None:
                candidates = await self._reject_erased(candidates, answer)
            if candidates:
                await self._claim_and_publish(candidates, answer)
        finally:
            self._count_outcomes(kinds, answer.statuses)
        return answer.response(events)

    def _count_outcomes(self, kinds: list[str], statuses: list[_StatusValue]) -> None:
        # Counted per (kind, outcome), not per event: labels() takes a lock each call.
        if len(set(kinds)) == 1:  # the common batch: one kind
            outcomes = Counter({(kinds[0], s): n for s, n in Counter(statuses).items()})
        else:
            outcomes = Counter(zip(kinds, statuses, strict=True))
        for (kind, status), count in outcomes.items():
            outcome = _OUTCOME_LABEL.get(status)
            if outcome is not None:  # unset when a 503 cut the batch short
                self._metrics.events.labels(kind=kind, outcome=outcome).inc(count)

    def _prepare(
        self,
        index: int,
        decoded: DecodedEvent,
        *,
        api_key: ApiKey,
        now: datetime,
        received_at: Timestamp,
        window: tuple[float, float],
    ) -> _Candidate | Violation:
        if decoded.event is None:
            return decoded.error or Violation("", "could not be parsed")
        event = decoded.event
        violations = validate_event(
            event, tenant_id=api_key.tenant_id, now=now, limits=self._limits, window=window
        )
        if violations:
            return violations[0]
        kind = decoded.kind
        assert kind is not None  # validate_event rejected events without a kind
        message: EventMessage = getattr(event, kind)
        stamp_envelope(message.envelope, tenant_id=api_key.tenant_id, received_at=received_at)
        record = build_record(kind, message, self._settings)
        size = len(record.value) + len(record.key)
        if size > self._settings.ingest_max_record_bytes:
            return Violation(
                kind,
                f"serializes to {size} bytes; at most {self._settings.ingest_max_record_bytes} "
                "per event (shorten free text or source code)",
            )
        dedup_key = DedupKey(api_key.tenant_id, message.envelope.event_id)
        learner = (api_key.tenant_id, message.envelope.user_id)
        return _Candidate(
            position=index, kind=kind, dedup_key=dedup_key, record=record, learner=learner
        )

    async def _reject_erased(
        self, candidates: list[_Candidate], answer: _Answer
    ) -> list[_Candidate]:
        """Reject the events of erased learners; the others go on. One query at most."""
        try:
            erased = await self.erased.among(self._pool, {c.learner for c in candidates})
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailableError(
                "postgresql",
                f"could not check for erased learners ({type(exc).__name__}); nothing was "
                "published",
                retry_after_s=self._settings.ingest_retry_after_s,
            ) from exc
        if not erased:
            return candidates
        kept = []
        for candidate in candidates:
            if candidate.learner in erased:
                field = f"{candidate.kind}.envelope.user_id"
                self._reject(answer, candidate.position, Violation(field, "erased"))
            else:
                kept.append(candidate)
        return kept

    def _reject(self, answer: _Answer, index: int, violation: Violation) -> None:
        field = f"events[{index}]" + (f".{violation.field}" if violation.field else "")
        answer.set(index, _Status.EVENT_STATUS_REJECTED, field, violation.reason)
        self._metrics.count_rejection(violation.field)

    async def _claim_and_publish(self, candidates: list[_Candidate], answer: _Answer) -> None:
        token = new_claim_token()
        try:
            states = await self._dedup.claim([c.dedup_key for c in candidates], token=token)
        except DedupUnavailableError as exc:
            self._metrics.dedup_unavailable.set(1)
            self._metrics.dedup_refusals.inc()
            raise DependencyUnavailableError(
                "redis",
                f"{exc}; events are not accepted without deduplication, nothing was published",
                retry_after_s=self._settings.ingest_retry_after_s,
            ) from exc
        self._metrics.dedup_unavailable.set(0)
        claimed = []
        for candidate, state in zip(candidates, states, strict=True):
            if state is ClaimState.CLAIMED:
                claimed.append(candidate)
            elif state is ClaimState.DONE:
                answer.set(
                    candidate.position,
                    _Status.EVENT_STATUS_DUPLICATE,
                    reason="this event_id was accepted before",
                )
            else:
                answer.set(
                    candidate.position,
                    _Status.EVENT_STATUS_RETRY_LATER,
                    f"events[{candidate.position}].{candidate.kind}.envelope.event_id",
                    "another request is publishing this event_id right now; "
                    f"send it again after {self._settings.ingest_retry_after_s} s",
                )
        if not claimed:
            return
        keys = [c.dedup_key for c in claimed]
        try:
            batch = self._producer.publish_batch([c.record for c in claimed])
        except ProducerQueueFull as exc:
            await self._release_quietly(keys, token)
            raise DependencyUnavailableError(
                "kafka",
                f"{exc}: the broker is slow or down; nothing of this batch was published",
                retry_after_s=self._settings.ingest_retry_after_s,
            ) from exc
        except BaseException:
            await self._release_quietly(keys, token)
            raise
        settling = asyncio.create_task(self._settle(claimed, token, batch, time.perf_counter()))
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)
        # Not cancelled with the request: asyncio.wait leaves the task running.
        done, _running = await asyncio.wait({settling}, timeout=self._wait_s)
        if not done:
            raise DependencyUnavailableError(
                "kafka",
                f"the broker did not acknowledge {len(claimed)} events within "
                f"{self._settings.ingest_delivery_timeout_ms} ms; they stay claimed until it "
                f"answers (at most {self._producer.message_timeout_ms // 1000} s): retry the "
                "batch, events it stored come back DUPLICATE, events still undecided "
                "RETRY_LATER, and the others are published then",
                retry_after_s=self._settings.ingest_retry_after_s,
            )
        failure = settling.result()
        if failure is not None:
            raise failure
        statuses = answer.statuses
        for candidate in claimed:
            statuses[candidate.position] = _Status.EVENT_STATUS_ACCEPTED

    async def _settle(
        self, claimed: list[_Candidate], token: str, batch: DeliveryBatch, started: float
    ) -> DependencyUnavailableError | None:
        """Wait for the delivery reports; mark stored claims done, release failed ones.

        Returns the 503 to answer when any record failed.
        """
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), self._producer.report_within_s)
        except TimeoutError:
            # librdkafka owes a report for every record; without one nobody knows whether
            # the broker stored them, so the claims stay pending until the pending TTL.
            log.error(
                "no delivery report within the delivery bound; claims left to expire",
                extra={"events": len(claimed), "event_id": claimed[0].dedup_key.event_id},
            )
            return DependencyUnavailableError(
                "kafka",
                f"no delivery report for {len(claimed)} events",
                retry_after_s=self._settings.ingest_retry_after_s,
            )
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        errors = batch.errors
        delivered = [c.dedup_key for c, error in zip(claimed, errors, strict=True) if error is None]
        failed = [(c, e) for c, e in zip(claimed, errors, strict=True) if e is not None]
        try:
            await self._dedup.mark_done(delivered)
        except DedupUnavailableError as exc:
            # The broker has these events: they are accepted. Their claims stay
            # "pending" (a quick retry gets RETRY_LATER) while a task of its own keeps
            # trying to mark them done, so they do not expire into "never seen".
            self._metrics.dedup_unavailable.set(1)
            log.error(
                "could not mark delivered events done; retrying",
                extra={"error": str(exc)},
                exc_info=False,
            )
            later = asyncio.create_task(self._mark_done_later(delivered))
            self._settling.add(later)
            later.add_done_callback(self._settling.discard)
        if not failed:
            return None
        await self._release_quietly([c.dedup_key for c, _ in failed], token)
        failed_kinds = Counter(c.kind for c, _ in failed)
        for kind, count in failed_kinds.items():
            self._metrics.events.labels(kind=kind, outcome="failed").inc(count)
        first_error = failed[0][1]
        log.warning(
            "broker did not acknowledge events",
            extra={
                "failed": len(failed),
                "delivered": len(delivered),
                "error": first_error,
                "event_id": failed[0][0].dedup_key.event_id,
            },
        )
        return DependencyUnavailableError(
            "kafka",
            f"the broker did not acknowledge {len(failed)} of {len(claimed)} events "
            f"(first error: {first_error}); {len(delivered)} were published and will be "
            "reported as duplicates when you retry the batch",
            retry_after_s=self._settings.ingest_retry_after_s,
        )

    async def _mark_done_later(self, keys: list[DedupKey]) -> DependencyUnavailableError | None:
        """Retry the done marker of delivered ``keys`` until Redis takes it or their
        claims expire (the pending TTL); returns None (nothing for a request to answer)."""
        deadline = time.monotonic() + self._dedup.pending_ttl
        while time.monotonic() < deadline:
            await asyncio.sleep(_MARK_DONE_RETRY_S)
            try:
                await self._dedup.mark_done(keys)
            except DedupUnavailableError:
                continue
            log.info(
                "marked delivered events done after Redis returned", extra={"events": len(keys)}
            )
            return None
        log.error(
            "delivered events never marked done; a resend after their claims expired is "
            "published again",
            extra={"events": len(keys), "event_id": keys[0].event_id},
        )
        return None

    async def _release_quietly(self, keys: list[DedupKey], token: str) -> None:
        try:
            await self._dedup.release(keys, token=token)
        except DedupUnavailableError as exc:
            # The claims expire after the pending TTL; until then retries get RETRY_LATER.
            self._metrics.dedup_unavailable.set(1)
            log.error("could not release dedup claims", extra={"error": str(exc)})
