"""Prometheus metrics of the ingest service, in a registry of its own per app.

A registry per app (not the process-global one) lets tests build many apps in
one process. ``GET /metrics`` renders it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from learnstream.kafka import AsyncProducer

# Publish latency buckets in seconds: a healthy local broker answers in a few ms,
# a struggling one in seconds, the delivery timeout caps it.
_PUBLISH_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INDEX = re.compile(r"\[[^\]]*\]")


class IngestMetrics:
    """Every metric ingest exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "learnstream_ingest_requests",
            "HTTP requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "learnstream_ingest_events",
            "Events of posted batches by kind and outcome "
            "(accepted, duplicate, rejected, retry_later, failed)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "learnstream_ingest_rejections",
            "Rejected events by the field named in the rejection (indices removed)",
            ["field"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "learnstream_ingest_publish_seconds",
            "Seconds from producing a batch's records to the broker's last acknowledgement",
            buckets=_PUBLISH_BUCKETS,
            registry=self.registry,
        )
        self.dedup_unavailable = Gauge(
            "learnstream_ingest_dedup_unavailable",
            "1 while Redis (deduplication) fails; ingest then refuses events with 503 "
            "instead of accepting them without the dedup guarantee (no fallback mode)",
            registry=self.registry,
        )
        self.dedup_refusals = Counter(
            "learnstream_ingest_dedup_refusals",
            "Requests refused with 503 because Redis was unavailable",
            registry=self.registry,
        )

    def watch_producer(self, producer: AsyncProducer) -> None:
        """Export the producer's queue depth and fatal-error replacements."""
        self.registry.register(_ProducerCollector(producer))

    def count_rejection(self, field: str) -> None:
        """Count one rejected event under its field path, e.g. ``attempt.skill_ids[]``."""
        self.rejections.labels(field=_INDEX.sub("[]", field) or "event").inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class _ProducerCollector:
    """Reads the live producer at scrape time, so the figures are never stale."""

    def __init__(self, producer: AsyncProducer) -> None:
        self._producer = producer

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "learnstream_ingest_producer_queue_depth",
            "Records in the producer's local queue, not yet acknowledged by the broker",
            value=self._producer.queue_depth(),
        )
        yield CounterMetricFamily(
            "learnstream_ingest_producer_replacements",
            "Times the Kafka producer was replaced after a fatal error (e.g. broker restart)",
            value=self._producer.replacements,
        )
