"""Ingest's delivery bound for the shared producer: librdkafka waits longer than a request."""

from __future__ import annotations

from ingest.producer import MESSAGE_TIMEOUT_FACTOR, ingest_producer, message_timeout_ms
from learnstream.settings import Settings


def test_librdkafka_waits_longer_than_a_request() -> None:
    settings = Settings(ingest_delivery_timeout_ms=5_000)
    assert message_timeout_ms(settings) == MESSAGE_TIMEOUT_FACTOR * 5_000 == 30_000


def test_the_ingest_producer_reports_within_its_bound_and_connects_within_a_request() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", ingest_delivery_timeout_ms=5_000)
    producer = ingest_producer(settings)
    try:
        assert producer.message_timeout_ms == 30_000
        assert producer.report_within_s == 35.0
    finally:
        producer.close(timeout_s=0)
