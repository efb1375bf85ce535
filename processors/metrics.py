"""Prometheus metrics of the processors (served at ``/metrics`` by the Faust web server).

Every metric carries a ``processor`` label, so one registry serves any number of
processors in one process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "learnstream_processor_events_total",
    "Consumed records by outcome: applied, deadlettered, redelivered (skipped, "
    "already applied before a crash), held_back (beyond an offset gap, re-read after "
    "a rewind), or erased (of an erased learner: dropped, nothing written)",
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
    "Records of an assigned partition not yet applied: the broker's end offset minus the "
    "next offset stored in PostgreSQL (processors.lag explains the end offset on Tansu)",
    ["processor", "topic", "partition"],
)
END_OFFSET = Gauge(
    "learnstream_processor_end_offset",
    "End offset (next offset to be written) of an assigned partition, as the broker reports it",
    ["processor", "topic", "partition"],
)
PARTITION_IDLE_SECONDS = Gauge(
    "learnstream_processor_partition_idle_seconds",
    "Seconds since an assigned partition last committed a record (or since it was "
    "assigned to this worker); growing with lag > 0 means the partition is stuck",
    ["processor", "topic", "partition"],
)
PARTITION_STALLED = Gauge(
    "learnstream_processor_partition_stalled",
    "1 when an assigned partition has lag and committed nothing for "
    "LEARNSTREAM_PROCESSOR_STALL_AFTER_S seconds, else 0",
    ["processor", "topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "learnstream_processor_assigned_partitions",
    "Partitions currently assigned to this worker",
    ["processor"],
)
LAG_SAMPLE_FAILURES = Counter(
    "learnstream_processor_lag_sample_failures_total",
    "Lag samples that failed (broker or PostgreSQL unreachable); the gauges keep old values",
    ["processor"],
)

# --- learner state -------------------------------------------------------------------
ABILITY_SKIPPED = Counter(
    "learnstream_learner_ability_skipped_total",
    "Attempts whose IRT ability update was skipped, by reason (no_item_parameters: the "
    "item is not calibrated yet; no_item: the attempt names no item). Re-counted when a "
    "batch is retried",
    ["reason"],
)
SCHEDULE_RESETS = Counter(
    "learnstream_review_schedule_resets_total",
    "Review schedules restarted because the tenant's algorithm changed (state of another "
    "algorithm found). Re-counted when a batch is retried",
)
STALE_WRITES = Counter(
    "learnstream_processor_stale_writes_total",
    "Writes refused because a view row's version changed since it was read (another "
    "writer); the batch is retried",
    ["processor", "view"],
)
HOT_CACHE_FAILURES = Counter(
    "learnstream_learner_cache_refresh_failures_total",
    "Redis hot-cache refreshes that failed after a commit (entries expire by TTL)",
)

# --- code submissions and the lake ------------------------------------------------------
CODE_SUBMISSIONS = Counter(
    "learnstream_code_submissions_total",
    "Code submissions recorded, by status (analyzed, tests_only, unparsable, no_tests). "
    "Re-counted when a batch is retried",
    ["status"],
)
LAKE_ROWS = Counter(
    "learnstream_lake_rows_written_total",
    "Rows written to Parquet files by the lake sink (rewrites after a crash included)",
    ["table"],
)
LAKE_FILES = Counter(
    "learnstream_lake_files_written_total",
    "Parquet files written (renamed into place) by the lake sink",
    ["table"],
)
NEXT_OFFSET = Gauge(
    "learnstream_processor_next_offset",
    "Next offset to apply per partition, as committed to PostgreSQL",
    ["processor", "topic", "partition"],
)
