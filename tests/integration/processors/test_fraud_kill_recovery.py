"""kill -9 recovery of the fraud worker: every fraud table equal to an uninterrupted run.

Real ASSISTments 2009 answers (``as.csv``: response times, answer text, classes, the
learners enrolled in their classes), a small collusion ring, and session events on
shared lab PCs are produced twice, to two topic namespaces, all on one partition: the fraud state is
partly shared between learners (item medians, answer counts, collusion groups,
devices), so one total order is what makes "the views of an uninterrupted run"
unique (see processors/fraud.py). One copy is processed without interruption, the
other through two SIGKILLs and a SIGTERM at random points; every fraud table (view
and state) must then be identical, row for row, apart from bookkeeping columns
(updated_at, and version, which counts upserts and so depends on batch sizes).
"""

from __future__ import annotations

import logging
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import envelope_pb2, session_pb2
from learnstream.kafka import Stream, ensure_topics, learner_key
from learnstream.settings import Settings
from tests.integration.processors.crash import (
    produce_in_order,
    run_to_end,
    run_with_kills,
    stable_uuid,
)
from tests.integration.processors.streams import (
    AS_CSV,
    LoggedAttempt,
    collusion_ring,
    read_logged_attempts,
    write_classes,
)

log = logging.getLogger(__name__)

TENANT = "tenant-as"
ATTEMPTS = 2500
FRAUD_TABLES = {
    "fraud_signals": "tenant_id, subject_kind, subject_id",
    "fraud_reference_stats": "tenant_id, scope, scope_id",
    "fraud_wrong_answer_counts": "tenant_id, item_id, response",
    "fraud_group_wrong_answers": "tenant_id, group_key, item_id, response, event_id",
    "fraud_collusion_partners": "tenant_id, event_id, partner_user_id",
    "fraud_learner_history": "tenant_id, user_id",
    "fraud_device_sessions": "tenant_id, device_id, session_id, user_id",
}


def stream(settings: Settings, attempts: list[LoggedAttempt]) -> list[tuple[str, bytes, bytes]]:
    """The attempts, each learner's first one preceded by a session start on a shared PC."""
    records: list[tuple[str, bytes, bytes]] = []
    started: set[str] = set()
    for attempt in attempts:
        if attempt.user_id not in started:
            started.add(attempt.user_id)
            envelope = envelope_pb2.Envelope(
                event_id=stable_uuid("session-event", attempt.user_id),
                tenant_id=TENANT,
                user_id=attempt.user_id,
                session_id=stable_uuid("session", attempt.user_id),
            )
            envelope.occurred_at.FromDatetime(attempt.occurred_at)
            # 30 lab PCs: several learners end up on one within the hour.
            device = f"lab-pc-{uuid.UUID(attempt.user_id).int % 30}"
            session = session_pb2.SessionEvent(
                envelope=envelope, action=session_pb2.SESSION_ACTION_STARTED, device_id=device
            )
            records.append(
                (
                    settings.topic(Stream.SESSIONS),
                    learner_key(TENANT, attempt.user_id),
                    session.SerializeToString(),
                )
            )
        records.append((settings.topic(Stream.ATTEMPTS), attempt.key(), attempt.value()))
    return records


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[Any]]:
    tables: dict[str, list[Any]] = {}
    for table, order in FRAUD_TABLES.items():
        rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = [
            {k: v for k, v in dict(r).items() if k not in ("updated_at", "version")} for r in rows
        ]
    return tables


async def test_killed_fraud_worker_ends_with_the_tables_of_an_uninterrupted_run(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    attempts = read_logged_attempts(shared_data / AS_CSV, tenant_id=TENANT, limit=ATTEMPTS)
    attempts += collusion_ring(attempts)
    await write_classes(db_pool, TENANT, attempts)
    clean = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    killed = clean.model_copy(update={"kafka_topic_namespace": f"{clean.kafka_topic_namespace}k"})
    ensure_topics(killed)
    clean_ends = produce_in_order(clean, stream(clean, attempts), partition=0)
    killed_ends = produce_in_order(killed, stream(killed, attempts), partition=0)

    seconds = await run_to_end("fraud", clean, db_pool, clean_ends, log_dir=tmp_path)
    records = sum(sum(e.values()) for e in clean_ends.values())
    log.info("clean run: %d records in %.1f s from process start", records, seconds)
    reference = await snapshot(db_pool)
    for table in FRAUD_TABLES:
        await db_pool.execute(f"DELETE FROM {table}")  # the services' role: no TRUNCATE
    report = await run_with_kills(
        "fraud", killed, db_pool, killed_ends, log_dir=tmp_path, rng=rng, what=f"seed {seed}"
    )
    log.info("fraud drill: seed=%d %s", seed, report)
    after_kills = await snapshot(db_pool)

    # Not vacuous: real signals fired, in more than one kind.
    signals = reference["fraud_signals"]
    fired = {k for r in signals for k in r if k.startswith("w_") and r[k] > 0}
    log.info(
        "fraud rows: %d signals (%s), %d flagged, %d collusion partners",
        len(signals),
        sorted(fired),
        sum(r["flagged"] for r in signals),
        len(reference["fraud_collusion_partners"]),
    )
    assert {"w_rapid_response", "w_collusion", "w_shared_device"} <= fired
    for table in FRAUD_TABLES:
        assert after_kills[table] == reference[table], f"{table} differs (seed {seed})"
