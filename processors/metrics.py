"""Prometheus metrics of the processors (served at ``/metrics`` by the Faust web server).

Every metric carries a ``processor`` label, so one registry serves any number of
processors in one process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "learnstream_processor_events_total",
    "Consumed records by outcome: applied, deadlettered, or redelivered (skipped, "
    "already applied before a crash)",
    ["processor", "outcome"],
)
BATCH_SECONDS = Histogram(
    "learnstream_processor_batch_seconds",
    "Wall time of one batch, from the database transaction's start to its commit "
    "(retries included), in seconds",
    ["processor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "learnstream_processor_batch_records",
    "Records per batch",
    ["processor"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
)
RETRIES = Counter(
    "learnstream_processor_transient_retries_total",
    "Batches retried after a transient error (PostgreSQL or Kafka unreachable)",
    ["processor"],
)
CONSUMER_LAG = Gauge(
    "learnstream_processor_consumer_lag",
    "Broker high watermark minus the next offset to apply, per partition, in records. "
    "Only as good as the broker's high watermark (wrong on the local Tansu broker)",
    ["processor", "topic", "partition"],
)
NEXT_OFFSET = Gauge(
    "learnstream_processor_next_offset",
    "Next offset to apply per partition, as committed to PostgreSQL",
    ["processor", "topic", "partition"],
)
