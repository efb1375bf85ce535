"""kill -9 recovery of the notifications worker: inbox exact after crashes.

MasteryUpdated events from real ASSISTments attempts (spaced over days in event time)
are produced over all partitions (the rules keep per-learner state only, so the
interleaving of partitions does not matter); the worker is SIGKILLed twice and
SIGTERMed once at random points and restarted. ``notifications`` and
``notification_learners`` must then equal the pure replay
(:func:`processors.notifications.chain_notifications`), and the topic must hold
every NotificationEvent, repeats being identical copies. No webhook here (event
time only, the deterministic path); delivery is covered by the worker test.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import notification_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.events import LearnerKey
from processors.notifications import NotifyRow
from scheduler.notify import NotifyConfig
from tests.integration.processors.crash import produce_in_order, run_with_kills
from tests.integration.processors.streams import mastery_records
from tests.integration.processors.support import DATASET, consume_all
from tests.integration.processors.test_notifications_worker import (
    PERIOD,
    expected_notices,
    stored_inbox,
    uuid_learners,
    view_of,
    write_profiles,
)
from tests.integration.processors.test_recommendations_worker import (
    spaced_specs,
    steps_of,
    write_due_reviews,
)

log = logging.getLogger(__name__)


async def stored_learners(pool: asyncpg.Pool) -> dict[LearnerKey, NotifyRow]:
    return {
        LearnerKey(r["tenant_id"], r["user_id"]): NotifyRow(
            mastered_skills=set(r["mastered_skills"]),
            streak_days=r["streak_days"],
            last_active_day=r["last_active_day"],
            last_digest_period=r["last_digest_period"],
            stalled_sessions=r["stalled_sessions"],
            session_id=r["session_id"],
            last_event_at=r["last_event_at"],
            session_start=json.loads(r["session_start"]),
            session_end=json.loads(r["session_end"]),
            last_event_id=str(r["last_event_id"]),
        )
        for r in await pool.fetch("SELECT * FROM notification_learners")
    }


async def test_killed_notifications_worker_resumes_with_identical_inbox(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    settings = topics.model_copy(
        update={
            "processor_web_port": 0,
            "processor_batch_max": 50,
            "notification_digest_period_s": int(PERIOD.total_seconds()),
            "notification_stall_sessions": 3,
            "notification_sweep_interval_s": 0,  # event time only: a replayable run
        }
    )
    mastery_topic = settings.topic(Stream.MASTERY)
    specs = uuid_learners(
        spaced_specs(shared_data / DATASET, students=40, limit=2000, first_student=300)
    )
    preferences = await write_profiles(db_pool, specs, rng)
    due = await write_due_reviews(db_pool, specs, rng)
    records = mastery_records(specs, topic=mastery_topic)
    ends = produce_in_order(
        settings, [(mastery_topic, r.key, r.value) for r in records], partition=None
    )
    notices, rows = expected_notices(
        steps_of(records, mastery_topic),
        due,
        preferences,
        NotifyConfig(digest_period=PERIOD, stall_sessions=3),
    )

    report = await run_with_kills(
        "notifications", settings, db_pool, ends, log_dir=tmp_path, rng=rng, what=f"seed {seed}"
    )
    log.info("notifications drill: seed=%d %s", seed, report)

    assert await stored_inbox(db_pool) == view_of(notices), f"seed {seed}"
    assert await stored_learners(db_pool) == rows, f"seed {seed}"

    wanted = {n.notification_id for n in notices}
    copies: dict[str, set[bytes]] = {}

    def every_event_seen(messages: list[Any]) -> bool:
        copies.clear()
        for message in messages:
            event = notification_pb2.NotificationEvent.FromString(message.value())
            copies.setdefault(event.envelope.event_id, set()).add(message.value())
        return set(copies) >= wanted

    consume_all(
        settings, settings.topic(Stream.NOTIFICATIONS), until=every_event_seen, timeout_s=30
    )
    assert set(copies) == wanted, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"
