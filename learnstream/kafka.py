"""The one place that knows how to talk to Kafka.

* :class:`Stream` names every topic; :meth:`Settings.topic` turns it into
  ``<namespace>.<stream>.v1``.
* :func:`client_config` builds the librdkafka dictionary once (bootstrap,
  security); producer, consumer and admin configs extend it.
* :class:`AsyncProducer` wraps confluent-kafka's idempotent producer for asyncio:
  every publish is awaited until the broker acknowledged it, and a producer left
  in a fatal state (seen after a broker restart) is replaced on the next call.
* :func:`faust_broker_kwargs` gives Faust apps the same endpoints and timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # stubs omit the re-export

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
    DEADLETTER = "deadletter"


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
    """An idempotent, acks=all producer whose deliveries fail after ``delivery_timeout_ms``."""
    timeout_ms = delivery_timeout_ms or settings.ingest_delivery_timeout_ms
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": timeout_ms,
        # A broker that is down must fail the request quickly, not after minutes.
        "socket.connection.setup.timeout.ms": min(timeout_ms, 10_000),
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
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism,
        )
    return kwargs


def admin_client(settings: Settings) -> AdminClient:
    """An admin client on the configured cluster."""
    return AdminClient(client_config(settings))


def ensure_topics(
    settings: Settings, streams: Sequence[Stream] = tuple(Stream), timeout_s: float = 15.0
) -> list[str]:
    """Create the topics of ``streams`` that do not exist yet; return the names created.

    Partitions and replication come from settings. Raises ServiceUnavailableError
    when the cluster does not answer within ``timeout_s``.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}. "
            "Start it with `make services` or set LEARNSTREAM_KAFKA_BOOTSTRAP."
        ) from exc
    wanted = [settings.topic(s) for s in streams if settings.topic(s) not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            for name in wanted
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
    return created


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


class AsyncProducer:
    """An idempotent confluent-kafka producer whose deliveries can be awaited.

    A background thread serves delivery callbacks (``poll``). If librdkafka
    reports a fatal error (an idempotent producer can be left fenced after a
    broker restart), the instance is replaced on the next publish, so a service
    recovers by itself. Use :meth:`close` on shutdown; it flushes.
    """

    def __init__(self, settings: Settings, *, delivery_timeout_ms: int | None = None) -> None:
        self._config = producer_config(settings, delivery_timeout_ms=delivery_timeout_ms)
        self._timeout_s = self._config["message.timeout.ms"] / 1000
        self._lock = threading.Lock()
        self._fatal: str | None = None
        self._closed = False
        self.replacements = 0  # how many times a fatal producer was replaced
        self._producer = self._new_producer()
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        return Producer({**self._config, "error_cb": self._on_error})

    def _on_error(self, error: KafkaError) -> None:
        if _is_fatal(error):
            log.error("kafka producer fatal error", extra={"kafka_error": str(error)})
            self._fatal = str(error)
        else:
            log.warning("kafka producer error", extra={"kafka_error": str(error)})

    def _poll_forever(self) -> None:
        while not self._closed:
            with self._lock:
                producer = self._producer
            try:
                producer.poll(0.05)
            except KafkaException as exc:
                # poll() raises an idempotent producer's fatal error (e.g. UNKNOWN_PRODUCER_ID
                # after a broker restart). The thread must live on, or no delivery is ever
                # reported again; the next publish replaces the producer.
                if _is_fatal(exc.args[0]):
                    self._fatal = str(exc)
                log.error("kafka producer poll failed", extra={"kafka_error": str(exc)})
                time.sleep(0.05)

    def _replace_if_fatal(self) -> None:
        if self._fatal is None:
            return
        with self._lock:
            old, self._producer = self._producer, self._new_producer()
            self._fatal = None
            self.replacements += 1
        log.warning("replaced kafka producer after a fatal error")
        try:
            old.purge()  # its queued messages are failed; their callers already got errors
            old.flush(0)
        except KafkaException as exc:  # a fatal producer may raise its error again here
            log.warning("discarding the fatal producer", extra={"kafka_error": str(exc)})

    def queue_depth(self) -> int:
        """Messages waiting in the local queue (not yet acknowledged)."""
        return len(self._producer)

    async def publish(self, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """Publish ``records`` and wait until the broker acknowledged or failed each one.

        Returns one Delivery per record, in order. Raises ProducerQueueFull when the
        local queue cannot take them (nothing of this call was queued then).
        """
        self._replace_if_fatal()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Delivery]] = [loop.create_future() for _ in records]

        def callback_for(future: asyncio.Future[Delivery]) -> Any:
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    if _is_fatal(error):
                        self._fatal = str(error)
                    result = Delivery(error=str(error))
                else:
                    result = Delivery(
                        partition=message.partition() or 0, offset=message.offset() or 0
                    )
                loop.call_soon_threadsafe(_resolve, future, result)

            return on_delivery

        producer = self._producer
        queued = 0
        try:
            for record, future in zip(records, futures, strict=True):
                producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    on_delivery=callback_for(future),
                )
                queued += 1
        except BufferError as exc:
            # Records already queued will still be delivered or fail; report the rest failed.
            for future in futures[queued:]:
                future.set_result(Delivery(error="producer queue full"))
            if queued == 0:
                raise ProducerQueueFull("producer queue is full") from exc
        except KafkaException as exc:
            if _is_fatal(exc.args[0]):
                self._fatal = str(exc)
            for future in futures[queued:]:
                future.set_result(Delivery(error=str(exc)))
        # librdkafka fails each message after message.timeout.ms; the margin covers polling.
        _done, pending = await asyncio.wait(futures, timeout=self._timeout_s + 5)
        for future in pending:
            future.set_result(Delivery(error="delivery not confirmed in time"))
        return [future.result() for future in futures]

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush outstanding messages and stop; returns how many were still unsent."""
        self._closed = True
        self._poller.join(timeout=1.0)
        return int(self._producer.flush(timeout_s))


def _is_fatal(error: KafkaError) -> bool:
    # error_cb announces a fatal error with code _FATAL while error.fatal() stays
    # False, and produce() then raises _FATAL; checking only fatal() missed both.
    # PRODUCER_FENCED is not flagged fatal either, yet the producer never recovers: after
    # messages time out (broker unreachable) librdkafka bumps the idempotent epoch, Tansu
    # answers PRODUCER_FENCED, and every later delivery fails the same way
    # (tests/integration/faults/test_broker_outage.py). Only a new producer gets out.
    return bool(error.fatal()) or error.code() in (KafkaError._FATAL, KafkaError.PRODUCER_FENCED)


def _resolve(future: asyncio.Future[Delivery], result: Delivery) -> None:
    if not future.done():
        future.set_result(result)
