"""Prometheus metrics of the ingest service, in a registry of its own per app.

A registry per app (not the process-global one) lets tests build many apps in
one process. ``GET /metrics`` renders it.

Several worker processes (``ingest_workers`` > 1, ingest/__main__.py): a scrape
reaches one worker, so each would report only its own counts. ``python -m ingest``
then runs prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``):
counters, histograms and the Redis gauge are written to files there and
``render`` sums them over all workers (the gauge: the highest of the live
workers). The producer's queue depth and replacements are read live from the
answering worker's own producer (a collector cannot read another process), so
with several workers they describe that worker only; they carry a ``pid`` label
then, to say so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
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
        # Set by python -m ingest with several workers (read once, like prometheus_client).
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._producer_collector: _ProducerCollector | None = None
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
            multiprocess_mode="livemax",  # 1 while any live worker sees Redis fail
        )
        self.dedup_refusals = Counter(
            "learnstream_ingest_dedup_refusals",
            "Requests refused with 503 because Redis was unavailable",
            registry=self.registry,
        )
        self.dedup_unreplicated = Counter(
            "learnstream_ingest_dedup_unreplicated",
            "Redis Sentinel mode: dedup writes (keys) that fewer replicas than "
            "LEARNSTREAM_REDIS_WAIT_REPLICAS acknowledged in time, by step (claim, done); "
            "a failover before they replicate loses them",
            ["step"],
            registry=self.registry,
        )

    def watch_producer(self, producer: AsyncProducer) -> None:
        """Export the producer's queue depth and replacements (fatal error or timed-out records)."""
        self._producer_collector = _ProducerCollector(producer, per_process=self.multiprocess)
        self.registry.register(self._producer_collector)

    def count_unreplicated(self, step: str, keys: int) -> None:
        """Count ``keys`` dedup writes of ``step`` (claim, done) that replicas did not confirm."""
        self.dedup_unreplicated.labels(step=step).inc(keys)

    def count_rejection(self, field: str) -> None:
        """Count one rejected event under its field path, e.g. ``attempt.skill_ids[]``."""
        self.rejections.labels(field=_INDEX.sub("[]", field) or "event").inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format (summed over workers if several)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
        own = CollectorRegistry()
        if self._producer_collector is not None:
            own.register(self._producer_collector)
        return generate_latest(workers) + generate_latest(own)

    def process_exiting(self) -> None:
        """Drop this worker's live gauges from the multiprocess files (on shutdown)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _ProducerCollector:
    """Reads the live producer at scrape time, so the figures are never stale."""

    def __init__(self, producer: AsyncProducer, *, per_process: bool = False) -> None:
        self._producer = producer
        self._labels = {"pid": str(os.getpid())} if per_process else {}

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "learnstream_ingest_producer_queue_depth",
            "Records in the producer's local queue, not yet acknowledged by the broker",
            labels=list(self._labels),
        )
        depth.add_metric(list(self._labels.values()), self._producer.queue_depth())
        yield depth
        replacements = CounterMetricFamily(
            "learnstream_ingest_producer_replacements",
            "Times the Kafka producer was replaced after a fatal error or timed-out records "
            "(e.g. broker restart)",
            labels=list(self._labels),
        )
        replacements.add_metric(list(self._labels.values()), self._producer.replacements)
        yield replacements
