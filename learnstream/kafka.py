"""The one place that knows how to talk to Kafka.

* :class:`Stream` names every topic; :meth:`Settings.topic` turns it into
  ``<namespace>.<stream>.v1``.
* :func:`client_config` builds the librdkafka dictionary once (bootstrap,
  security); producer, consumer and admin configs extend it.
* :class:`AsyncProducer` wraps confluent-kafka's idempotent producer for asyncio, the
  one producer of every service: a batch of records resolves one future when the
  broker acknowledged or failed each (:meth:`AsyncProducer.publish_batch`, ingest's
  hot path) or is awaited for one answer per record (:meth:`AsyncProducer.publish`);
  a producer left fatal or with timed-out records (seen after a broker restart) is
  replaced on the next call.
* :func:`faust_broker_kwargs` gives Faust apps the same endpoints and timeouts.
* :func:`topic_config` is every topic's explicit configuration (retention, cleanup
  policy); :func:`ensure_topics` creates topics with it and reads it back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # stubs omit the re-export
    AdminClient,
    ConfigResource,
    NewTopic,
)

from learnstream.exceptions import ServiceUnavailableError
from learnstream.settings import Settings

log = logging.getLogger(__name__)


class Stream(StrEnum):
    """Every topic Learnstream uses, by stream name."""

    ATTEMPTS = "attempts"
    CODE_SUBMISSIONS = "code_submissions"
    SESSIONS = "sessions"
    PLACEMENTS = "placements"
    ACTIVITY = "activity"
    NOTIFICATIONS = "notifications"
    MASTERY = "mastery"
    GAPS = "gaps"
    FRAUD = "fraud"
    RECOMMENDATIONS = "recommendations"
    EXPERIMENTS = "experiments"  # ExperimentExposure
    DEADLETTER = "deadletter"
    # One record per erased learner (key tenant:learner, JSON value), compacted: outside
    # consumers learn of erasures (api.services.privacy publishes them).
    PRIVACY_ERASURES = "privacy.erasures"


# Streams whose topics are compacted instead of deleted by age.
COMPACTED_STREAMS = frozenset({Stream.PRIVACY_ERASURES})


# Headers a dead-lettered record carries (besides the original key and value).
DEADLETTER_ERROR_HEADER = "learnstream.error"
DEADLETTER_ORIGIN_HEADER = "learnstream.origin"  # "<topic>[<partition>]@<offset>"
DEADLETTER_PROCESSOR_HEADER = "learnstream.processor"

# Headers ingest puts on every input record: the full protobuf message name of the
# value (e.g. "learnstream.events.v1.AttemptEvent") and the event's event_id.
EVENT_TYPE_HEADER = "learnstream.event_type"
EVENT_ID_HEADER = "learnstream.event_id"


def learner_key(tenant_id: str, user_id: str) -> bytes:
    """The record key of every learner stream: one learner's events share a partition."""
    return f"{tenant_id}:{user_id}".encode()


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings every client shares: endpoints and security."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password else ""
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def producer_config(
    settings: Settings, *, delivery_timeout_ms: int | None = None
) -> dict[str, Any]:
    """An idempotent, acks=all producer whose deliveries fail after ``delivery_timeout_ms``.

    ``delivery_timeout_ms`` (librdkafka's ``message.timeout.ms``) defaults to
    ``settings.ingest_delivery_timeout_ms``, what a request waits.
    """
    timeout_ms = delivery_timeout_ms or settings.ingest_delivery_timeout_ms
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": timeout_ms,
        # A broker that is down must fail the request quickly, not after minutes: within
        # what a request waits, even where deliveries may take longer (ingest).
        "socket.connection.setup.timeout.ms": min(
            timeout_ms, settings.ingest_delivery_timeout_ms, 10_000
        ),
        "queue.buffering.max.messages": 200_000,
        # librdkafka's default (consistent_random, CRC32) maps keys unlike the Java client
        # and aiokafka/Faust (murmur2); this one agrees, so a learner keeps one partition
        # whichever client produced the record.
        "partitioner": "murmur2_random",
    }


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer in ``group_id`` that stores offsets only when told to."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
        "heartbeat.interval.ms": int(settings.consumer_heartbeat_interval_s * 1000),
    }


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` that point it at the same cluster and timeouts."""
    hosts = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    kwargs: dict[str, Any] = {
        "broker": hosts,
        "broker_session_timeout": settings.consumer_session_timeout_s,
        "broker_heartbeat_interval": settings.consumer_heartbeat_interval_s,
        # Tansu's idempotent-producer and transaction support fails for aiokafka;
        # exactly-once effect comes from PostgreSQL instead (docs/architecture.md).
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
    }
    if settings.kafka_sasl_mechanism:
        import faust  # Only needed against a secured cluster.

        password = settings.kafka_sasl_password
        # Faust speaks SASL_SSL only when given an SSL context; without one it would
        # send SASL over plaintext to a TLS listener and never connect.
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=(
                kafka_ssl_context(settings)
                if settings.kafka_security_protocol == "SASL_SSL"
                else None
            ),
        )
    elif settings.kafka_security_protocol == "SSL":
        import faust

        kwargs["broker_credentials"] = faust.SSLCredentials(kafka_ssl_context(settings))
    return kwargs


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A TLS context for aiokafka that trusts ``kafka_ssl_ca_location`` (else the system CAs)."""
    cafile = str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None
    return ssl.create_default_context(cafile=cafile)


def topic_config(settings: Settings, stream: Stream) -> dict[str, str]:
    """The explicit topic configuration of ``stream``.

    Event topics (raw and derived, dead letters included) are deleted by age after
    ``topic_retention_ms`` (default 7 days): an erased learner's records age out of
    Kafka within that, and older history lives in the lake, which erasure rewrites.
    :data:`COMPACTED_STREAMS` keep the last record per key for good.
    """
    if stream in COMPACTED_STREAMS:
        return {"cleanup.policy": "compact", "retention.ms": "-1"}
    return {"cleanup.policy": "delete", "retention.ms": str(settings.topic_retention_ms)}


def describe_topic_config(
    settings: Settings, topics: Sequence[str], timeout_s: float = 15.0
) -> dict[str, dict[str, str]]:
    """The configuration the broker reports for ``topics`` (name -> key -> value).

    A topic the broker does not describe (Tansu answers DescribeConfigs only in part)
    maps to what it did report, possibly nothing.
    """
    admin = admin_client(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    described: dict[str, dict[str, str]] = {topic: {} for topic in topics}
    if not resources:
        return described
    for resource, future in admin.describe_configs(resources).items():
        try:
            entries = future.result(timeout=timeout_s)
        except KafkaException as exc:
            log.warning(
                "broker did not describe topic config",
                extra={"topic": resource.name, "kafka_error": str(exc)},
            )
            continue
        described[resource.name] = {
            name: entry.value for name, entry in entries.items() if entry.value is not None
        }
    return described


def config_mismatches(
    settings: Settings, streams: Sequence[Stream], described: dict[str, dict[str, str]]
) -> dict[str, dict[str, tuple[str, str]]]:
    """Keys the broker reports with another value than :func:`topic_config` wants.

    ``topic -> key -> (wanted, reported)``; keys the broker does not report are not
    mismatches (Tansu reports few).
    """
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for stream in streams:
        topic = settings.topic(stream)
        reported = described.get(topic, {})
        wrong = {
            key: (wanted, reported[key])
            for key, wanted in topic_config(settings, stream).items()
            if key in reported and reported[key] != wanted
        }
        if wrong:
            found[topic] = wrong
    return found


def admin_client(settings: Settings) -> AdminClient:
    """An admin client on the configured cluster."""
    return AdminClient(client_config(settings))


def ensure_topics(
    settings: Settings, streams: Sequence[Stream] = tuple(Stream), timeout_s: float = 15.0
) -> list[str]:
    """Create the topics of ``streams`` that do not exist yet; return the names created.

    Partitions and replication come from settings, the topic configuration from
    :func:`topic_config`. Afterwards the configuration of every topic of ``streams`` is
    read back where the broker reports it, and a reported value that differs (a topic
    created by hand or by an older version) is logged as an error. Raises
    ServiceUnavailableError when the cluster does not answer within ``timeout_s``.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}. "
            "Start it with `make services` or set LEARNSTREAM_KAFKA_BOOTSTRAP."
        ) from exc
    wanted = [s for s in streams if settings.topic(s) not in existing]
    if not wanted:
        _check_configs(settings, streams, timeout_s)
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                settings.topic(stream),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                config=topic_config(settings, stream),
            )
            for stream in wanted
        ],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _check_configs(settings, streams, timeout_s)
    return created


def _check_configs(settings: Settings, streams: Sequence[Stream], timeout_s: float) -> None:
    try:
        described = describe_topic_config(settings, [settings.topic(s) for s in streams], timeout_s)
    except KafkaException as exc:
        log.warning("could not read topic configs back", extra={"kafka_error": str(exc)})
        return
    for topic, wrong in config_mismatches(settings, streams, described).items():
        log.error(
            "topic configuration differs from learnstream.kafka.topic_config; alter it with "
            "kafka-configs (e.g. retention.ms) so erased learners' records age out",
            extra={"topic": topic, "differs": {k: f"{w} != {r}" for k, (w, r) in wrong.items()}},
        )


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One record to publish."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """The broker's answer for one record: where it landed, or why it failed."""

    partition: int = -1
    offset: int = -1
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ProducerQueueFull(ServiceUnavailableError):
    """The local producer queue is full: the broker is slow or down."""


# Extra time, beyond message.timeout.ms, allowed for librdkafka to report a record's
# delivery and the poll thread to serve the report.
REPORT_MARGIN_S = 5.0
# What a record's delivery says until librdkafka reported it.
NOT_REPORTED = "delivery not confirmed in time"


def report_bound_s(message_timeout_ms: int) -> float:
    """Seconds within which a record queued with ``message_timeout_ms`` gets its report."""
    return message_timeout_ms / 1000 + REPORT_MARGIN_S


class DeliveryBatch:
    """The pending deliveries of one publish; ``errors[i]`` is None once record i is stored.

    The poll thread counts it down; :attr:`done` resolves with one loop wake-up when
    the last record was reported. Until then ``errors[i]`` is :data:`NOT_REPORTED`
    for a record not reported yet. ``positions[i]`` (partition, offset) is filled only
    for batches published by :meth:`AsyncProducer.publish`. ``generation`` is the
    :attr:`AsyncProducer.replacements` count of the producer that took the records.
    """

    __slots__ = ("_lock", "_loop", "_remaining", "done", "errors", "generation", "positions")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, size: int, *, positions: bool = False
    ) -> None:
        self._loop = loop
        self._lock = threading.Lock()  # a replaced producer's purge may report from the loop
        self._remaining = size
        self.errors: list[str | None] = [NOT_REPORTED] * size
        self.positions: list[tuple[int, int]] | None = [(-1, -1)] * size if positions else None
        self.done: asyncio.Future[None] = loop.create_future()
        self.generation = 0
        if size == 0:
            self.done.set_result(None)

    def report(self, index: int, error: str | None) -> None:
        """Record the delivery of record ``index``: None when stored (any thread)."""
        with self._lock:
            self.errors[index] = error
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._loop.call_soon_threadsafe(_resolve, self.done)

    def give_up_unqueued(self, first: int, error: str) -> None:
        """Records from ``first`` on were never queued: report them failed now (loop thread)."""
        for index in range(first, len(self.errors)):
            self.report(index, error)


class AsyncProducer:
    """An idempotent confluent-kafka producer whose deliveries can be awaited.

    :meth:`publish_batch` queues records and returns one :class:`DeliveryBatch` (one
    future for the whole batch; the delivery callback only counts it down: a C-level
    ``partial`` call and an integer decrement per record, no thread hop). This is
    ingest's hot path. :meth:`publish` awaits the same batch and answers one
    :class:`Delivery` per record.

    A background thread serves delivery callbacks (``poll``). The producer is replaced
    on the next publish when librdkafka reported a fatal error (an idempotent producer
    can be left fenced after a broker restart) or a record timed out (after a broker
    restart that lost the producer's state, its records time out for ever), so a
    service recovers by itself. The replaced producer is retired, not dropped: records
    it never sent are purged (failed for sure), records in flight keep their delivery
    reports, which the poll thread still serves until it is empty. Use :meth:`close`
    on shutdown; it flushes (every outstanding record gets its delivery report).
    """

    def __init__(self, settings: Settings, *, delivery_timeout_ms: int | None = None) -> None:
        """``delivery_timeout_ms`` is librdkafka's ``message.timeout.ms`` (default:
        ``settings.ingest_delivery_timeout_ms``)."""
        self._config = producer_config(settings, delivery_timeout_ms=delivery_timeout_ms)
        self.message_timeout_ms: int = self._config["message.timeout.ms"]
        self._lock = threading.Lock()
        self._replace_reason: str | None = None
        self._closed = False
        self.replacements = 0  # how many times a fatal or timed-out producer was replaced
        self._producer = self._new_producer()
        # Replaced producers with records still in flight; polled until empty.
        self._retired: list[Producer] = []
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    @property
    def report_within_s(self) -> float:
        """Seconds within which every queued record gets its delivery report."""
        return report_bound_s(self.message_timeout_ms)

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
            for old in retired:
                # A retired producer's fatal error is already dealt with: it was replaced.
                self._poll_once(old, 0, current=False)
                if len(old) == 0:
                    with self._lock:
                        self._retired.remove(old)
            self._poll_once(producer, 0.05, current=True)

    def _poll_once(self, producer: Producer, timeout_s: float, *, current: bool) -> None:
        try:
            producer.poll(timeout_s)
        except KafkaException as exc:
            # poll() raises an idempotent producer's fatal error (e.g. UNKNOWN_PRODUCER_ID
            # after a broker restart). The thread must live on, or no delivery is ever
            # reported again; the next publish replaces the producer.
            if current and _is_fatal(exc.args[0]):
                self._replace_reason = str(exc)
            log.error("kafka producer poll failed", extra={"kafka_error": str(exc)})
            time.sleep(0.05)

    def _replace_if_needed(self) -> None:
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
            # Records never sent fail for sure; records in flight may be stored, so they
            # wait for their own reports.
            old.purge(in_queue=True, in_flight=False, blocking=False)
        except KafkaException as exc:  # a fatal producer may raise its error again here
            log.warning("purging the replaced producer", extra={"kafka_error": str(exc)})

    def queue_depth(self) -> int:
        """Records in the local queue, not yet acknowledged."""
        return len(self._producer)

    def publish_batch(self, records: Sequence[OutgoingRecord]) -> DeliveryBatch:
        """Queue ``records``; the batch resolves when each was stored or failed for sure.

        Within :attr:`report_within_s` librdkafka reports every queued record. Raises
        ProducerQueueFull when the local queue takes none of them; records it took
        are still delivered or failed, the rest are reported failed at once.
        """
        batch = DeliveryBatch(asyncio.get_running_loop(), len(records))
        self._produce(records, batch, self._delivered)
        return batch

    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """Publish ``records`` and wait until the broker acknowledged or failed each one.

        Returns one Delivery per record, in order; a record not reported within
        :attr:`report_within_s` says :data:`NOT_REPORTED`. Raises ProducerQueueFull
        when the local queue cannot take them (nothing of this call was queued then).
        """
        batch = DeliveryBatch(asyncio.get_running_loop(), len(records), positions=True)
        self._produce(records, batch, self._delivered_at)
        # Not wait_for: a caller that stops waiting must not cancel the batch's future.
        await asyncio.wait((batch.done,), timeout=self.report_within_s)
        positions = batch.positions or []
        return [
            Delivery(error=error) if error is not None else Delivery(*position)
            for error, position in zip(batch.errors, positions, strict=True)
        ]

    def _produce(
        self,
        records: Sequence[OutgoingRecord],
        batch: DeliveryBatch,
        delivered: Callable[[DeliveryBatch, int, KafkaError | None, Message], None],
    ) -> None:
        self._replace_if_needed()
        batch.generation = self.replacements
        produce = self._producer.produce
        queued = 0
        try:
            for index, record in enumerate(records):
                produce(
                    record.topic,
                    record.value,
                    record.key,
                    headers=list(record.headers),
                    on_delivery=functools.partial(delivered, batch, index),
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

    def _delivered(
        self, batch: DeliveryBatch, index: int, error: KafkaError | None, _message: Message
    ) -> None:
        if error is None:
            batch.report(index, None)
            return
        # Only the current producer's failures replace it: a retired one's in-flight
        # records time out too, and must not retire its healthy successor.
        if batch.generation == self.replacements and (
            _is_fatal(error) or error.code() == KafkaError._MSG_TIMED_OUT
        ):
            self._replace_reason = str(error)
        batch.report(index, str(error))

    def _delivered_at(
        self, batch: DeliveryBatch, index: int, error: KafkaError | None, message: Message
    ) -> None:
        if error is None and batch.positions is not None:
            batch.positions[index] = (message.partition() or 0, message.offset() or 0)
        self._delivered(batch, index, error, message)

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
    # error_cb announces a fatal error with code _FATAL while error.fatal() stays
    # False, and produce() then raises _FATAL; checking only fatal() missed both.
    # PRODUCER_FENCED is not flagged fatal either, yet the producer never recovers: after
    # messages time out (broker unreachable) librdkafka bumps the idempotent epoch, Tansu
    # answers PRODUCER_FENCED, and every later delivery fails the same way
    # (tests/integration/faults/test_broker_outage.py). Only a new producer gets out.
    return bool(error.fatal()) or error.code() in (KafkaError._FATAL, KafkaError.PRODUCER_FENCED)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
