"""Ingest's own Kafka producer: a batch of records, one future for all their deliveries.

:class:`IngestProducer` is ``learnstream.kafka.producer_config`` (idempotent,
acks=all, murmur2) with two differences from the shared
:class:`learnstream.kafka.AsyncProducer`, both for ingest's hot path and its
exactly-once answer:

* **One wake-up per batch, not per record.** The delivery callback (poll thread)
  only stores an error, if any, and counts the batch down; the last delivery of a
  batch resolves its future with one ``call_soon_threadsafe``. Per record that is a
  C-level ``partial`` call and an integer decrement, instead of a thread hop and a
  future each (10.6 % of ingest's CPU in the batch-100 profile, docs/performance.md).
* **Delivery is bounded by librdkafka, not by the HTTP wait.** ``message.timeout.ms``
  is :data:`MESSAGE_TIMEOUT_FACTOR` times what a request waits
  (``ingest_delivery_timeout_ms``; 5 s by default, so 30 s). A request that stops
  waiting leaves its records with librdkafka, whose delivery report later says for
  sure whether the broker stored each one: ingest then marks the claim done or releases it
  (ingest/batch.py). Giving up locally while the broker may still store the record
  was what let a client retry publish a second copy.

A producer left fatal (an idempotent producer after a broker restart) is replaced
on the next publish, as in AsyncProducer; so is one whose records timed out (after
a broker restart that lost the producer's state, its records time out for ever).
The replaced producer is retired, not dropped: records it never sent are purged
(failed for sure), records in flight keep their delivery reports, which the poll
thread still serves until it is empty.

Residual gap: a record that librdkafka times out while it was in flight may have
been stored (its ack lost for all of ``message.timeout.ms``); it is released and a
retry publishes it again. That takes 30 s of lost acks, not a 5 s local wait.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from learnstream.kafka import OutgoingRecord, ProducerQueueFull, producer_config
from learnstream.settings import Settings

log = logging.getLogger(__name__)

# librdkafka's delivery bound for ingest (message.timeout.ms), as a multiple of the
# request's wait: after this long the delivery report of a record says failed for sure;
# until then it may still be stored. Long enough to ride out a broker failover or a
# short network cut without a failed delivery; pending dedup claims outlive it
# (ingest/dedup.py), so a crashed ingest process frees them only after its records
# can no longer land.
MESSAGE_TIMEOUT_FACTOR = 6
# Extra time, beyond message.timeout.ms, allowed for librdkafka to report and the poll
# thread to serve the report.
REPORT_MARGIN_S = 5.0


def message_timeout_ms(settings: Settings) -> int:
    """librdkafka's ``message.timeout.ms`` for ingest (30,000 for the default 5 s wait)."""
    return MESSAGE_TIMEOUT_FACTOR * settings.ingest_delivery_timeout_ms


class DeliveryBatch:
    """The pending deliveries of one publish; ``errors[i]`` is None once record i is stored.

    The poll thread counts it down; the event loop reads it after :attr:`done` resolved.
    """

    __slots__ = ("_lock", "_loop", "_remaining", "done", "errors")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()  # a replaced producer's purge may report from the loop
        self._remaining = size
        self.errors: list[str | None] = [None] * size
        self.done: asyncio.Future[None] = loop.create_future()
        if size == 0:
            self.done.set_result(None)

    def report(self, index: int, error: str | None) -> None:
        """Record the delivery of record ``index`` (any thread)."""
        with self._lock:
            if error is not None:
                self.errors[index] = error
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._loop.call_soon_threadsafe(_resolve, self.done)

    def give_up_unqueued(self, first: int, error: str) -> None:
        """Records from ``first`` on were never queued: report them failed now (loop thread)."""
        for index in range(first, len(self.errors)):
            self.report(index, error)


class IngestProducer:
    """An idempotent confluent-kafka producer whose batches of records can be awaited.

    A background thread serves delivery callbacks (``poll``). Use :meth:`close` on
    shutdown; it flushes (every outstanding record gets its delivery report).
    """

    def __init__(self, settings: Settings, *, timeout_ms: int | None = None) -> None:
        self.message_timeout_ms = timeout_ms or message_timeout_ms(settings)
        self._config = producer_config(settings, delivery_timeout_ms=self.message_timeout_ms)
        # Connection set-up fails fast even though deliveries may wait longer.
        self._config["socket.connection.setup.timeout.ms"] = min(
            settings.ingest_delivery_timeout_ms, 10_000
        )
        self._lock = threading.Lock()
        self._replace_reason: str | None = None
        self._closed = False
        self.replacements = 0  # how many times a fatal producer was replaced
        self._producer = self._new_producer()
        # Replaced producers with records still in flight; polled until empty.
        self._retired: list[Producer] = []
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    @property
    def report_within_s(self) -> float:
        """Seconds within which every queued record gets its delivery report."""
        return self.message_timeout_ms / 1000 + REPORT_MARGIN_S

    def _new_producer(self) -> Producer:
        return Producer({**self._config, "error_cb": self._on_error})

    def _on_error(self, error: KafkaError) -> None:
        if _is_fatal(error):
            log.error("kafka producer fatal error", extra={"kafka_error": str(error)})
            self._replace_reason = str(error)
        else:
            log.warning("kafka producer error", extra={"kafka_error": str(error)})

    def _poll_forever(self) -> None:
        while not self._closed:
            with self._lock:
                producer = self._producer
                retired = list(self._retired)
            try:
                for old in retired:
                    old.poll(0)
                    if len(old) == 0:
                        with self._lock:
                            self._retired.remove(old)
                producer.poll(0.05)
            except KafkaException as exc:
                # poll() raises an idempotent producer's fatal error; the thread must live
                # on or no delivery is reported again; the next publish replaces it.
                if _is_fatal(exc.args[0]):
                    self._replace_reason = str(exc)
                log.error("kafka producer poll failed", extra={"kafka_error": str(exc)})
                time.sleep(0.05)

    def _replace_if_fatal(self) -> None:
        if self._replace_reason is None:
            return
        reason = self._replace_reason
        with self._lock:
            old, self._producer = self._producer, self._new_producer()
            self._replace_reason = None
            self.replacements += 1
            self._retired.append(old)
        log.warning("replaced kafka producer", extra={"kafka_error": reason})
        try:
            # Records never sent fail for sure (their claims are released); records in
            # flight may be stored, so they wait for their own reports.
            old.purge(in_queue=True, in_flight=False, blocking=False)
        except KafkaException as exc:  # a fatal producer may raise its error again here
            log.warning("purging the replaced producer", extra={"kafka_error": str(exc)})

    def queue_depth(self) -> int:
        """Records in the local queue, not yet acknowledged."""
        return len(self._producer)

    def publish(self, records: Sequence[OutgoingRecord]) -> DeliveryBatch:
        """Queue ``records``; the batch resolves when each was stored or failed for sure.

        Within :attr:`report_within_s` librdkafka reports every queued record. Raises
        ProducerQueueFull when the local queue takes none of them; records it took
        are still delivered or failed, the rest are reported failed at once.
        """
        self._replace_if_fatal()
        batch = DeliveryBatch(asyncio.get_running_loop(), len(records))
        producer = self._producer
        produce = producer.produce
        report = batch.report
        delivered = self._delivered
        queued = 0
        try:
            for index, record in enumerate(records):
                produce(
                    record.topic,
                    record.value,
                    record.key,
                    headers=list(record.headers),
                    on_delivery=functools.partial(delivered, report, index),
                )
                queued += 1
        except BufferError as exc:
            if queued == 0:
                raise ProducerQueueFull("producer queue is full") from exc
            batch.give_up_unqueued(queued, "producer queue full")
        except KafkaException as exc:
            if _is_fatal(exc.args[0]):
                self._replace_reason = str(exc)
            batch.give_up_unqueued(queued, str(exc))
        return batch

    def _delivered(
        self,
        report: Callable[[int, str | None], None],
        index: int,
        error: KafkaError | None,
        _message: Message,
    ) -> None:
        if error is None:
            report(index, None)
            return
        if _is_fatal(error) or error.code() == KafkaError._MSG_TIMED_OUT:
            self._replace_reason = str(error)
        report(index, str(error))

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for outstanding reports; how many records are left."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush outstanding records and stop; returns how many were still unsent."""
        self._closed = True
        self._poller.join(timeout=1.0)
        for old in self._retired:
            old.flush(0)
        return int(self._producer.flush(timeout_s))


def _is_fatal(error: KafkaError) -> bool:
    # Same rule as learnstream.kafka: _FATAL via error_cb and PRODUCER_FENCED never recover.
    return bool(error.fatal()) or error.code() in (KafkaError._FATAL, KafkaError.PRODUCER_FENCED)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
