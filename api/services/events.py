"""Events the API itself publishes: placement results and recommendation feedback.

One idempotent producer per process (:class:`learnstream.kafka.AsyncProducer`),
created on the first publish so an API that never publishes never connects to
Kafka. Records are keyed ``tenant:learner`` like every learner stream and carry the
same type and event-id headers ingest puts on its records.

PostgreSQL holds the truth of what the API decided (the placement result, the
feedback row); the event tells the stream. A publish that fails is reported as
False and logged, and the caller records that the event is still owed.
"""

from __future__ import annotations

import logging

from learnstream.events.v1 import activity_pb2, placement_pb2
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    AsyncProducer,
    OutgoingRecord,
    Stream,
    learner_key,
)
from learnstream.settings import Settings

log = logging.getLogger(__name__)

# Seconds close() waits for records still queued at shutdown.
CLOSE_FLUSH_S = 2.0


# The events the API publishes (each has an envelope with event_id, tenant and user).
ApiEvent = placement_pb2.PlacementEvent | activity_pb2.UserActivityEvent


class EventPublisher:
    """Publishes learner events to their stream's topic and awaits the broker's ack."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AsyncProducer | None = None

    async def publish(self, stream: Stream, event: ApiEvent) -> bool:
        """Publish ``event`` to ``stream``; True once the broker acknowledged it.

        False (logged with topic and event id) when the broker refused it or did not
        answer within the producer's delivery timeout (``ingest_delivery_timeout_ms``).
        """
        topic = self._settings.topic(stream)
        envelope = event.envelope
        record = OutgoingRecord(
            topic=topic,
            key=learner_key(envelope.tenant_id, envelope.user_id),
            value=event.SerializeToString(),
            headers=(
                (EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode()),
                (EVENT_ID_HEADER, envelope.event_id.encode()),
            ),
        )
        if self._producer is None:
            self._producer = AsyncProducer(self._settings)
        try:
            (delivery,) = await self._producer.publish([record])
        except ServiceUnavailableError as exc:  # the local queue is full: broker slow or down
            log.warning(
                "event not published",
                extra={"topic": topic, "event_id": envelope.event_id, "error": str(exc)},
            )
            return False
        if not delivery.ok:
            log.warning(
                "event not published",
                extra={"topic": topic, "event_id": envelope.event_id, "error": delivery.error},
            )
            return False
        return True

    async def publish_records(self, records: list[OutgoingRecord]) -> bool:
        """Publish ready-made records (e.g. ``privacy.erasures``); True once all were acked.

        False (logged) when the broker refused one or did not answer in time.
        """
        if self._producer is None:
            self._producer = AsyncProducer(self._settings)
        try:
            deliveries = await self._producer.publish(records)
        except ServiceUnavailableError as exc:
            log.warning("records not published", extra={"error": str(exc)})
            return False
        failed = [d.error for d in deliveries if not d.ok]
        if failed:
            log.warning(
                "records not published",
                extra={"topic": records[0].topic, "failed": len(failed), "error": failed[0]},
            )
        return not failed

    def close(self) -> None:
        """Flush what is queued (briefly) and stop the producer, if one was started."""
        if self._producer is not None:
            unsent = self._producer.close(CLOSE_FLUSH_S)
            if unsent:
                log.warning("events unsent at shutdown", extra={"unsent": unsent})
            self._producer = None
