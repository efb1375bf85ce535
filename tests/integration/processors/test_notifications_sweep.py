"""The idle-learner sweep of the notifications processor, with a fixed clock.

Learners who send no events still get their review digest: :func:`run_idle_sweep`
(what the Faust timer calls) on the real PostgreSQL and broker sends one digest per
learner with something due and no digest yet in the period, none to the others,
nothing more when repeated in the same period, and its NotificationEvents go out.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import notification_pb2
from learnstream.kafka import AsyncProducer, Stream
from learnstream.settings import Settings
from processors.notifications import NotificationsProcessor, notice_id, run_idle_sweep
from scheduler.notify import period_index
from tests.integration.processors.support import (
    consume_all,
    running_worker,
    wait_for,
    worker_env,
)

NOW = datetime(2024, 5, 2, 15, 0, tzinfo=UTC)
PERIOD_S = 24 * 3600


async def add_learner(
    pool: asyncpg.Pool, user_id: str, due_at: list[datetime], last_digest_period: int | None
) -> None:
    """A learner the processor has seen (3 days before NOW) with reviews due at ``due_at``."""
    await pool.execute(
        "INSERT INTO notification_learners (tenant_id, user_id, last_digest_period, "
        "last_event_at, last_event_id) VALUES ('t', $1, $2, $3, $4)",
        user_id,
        last_digest_period,
        NOW - timedelta(days=3),
        str(uuid.uuid4()),
    )
    for n, at in enumerate(due_at):
        await pool.execute(
            "INSERT INTO review_schedule (tenant_id, user_id, item_id, algorithm, state, due_at, "
            "reviews, last_event_id, last_reviewed_at) "
            "VALUES ('t', $1, $2, 'fsrs', '{}'::jsonb, $3, 1, $4, $5)",
            user_id,
            f"item-{n}",
            at,
            str(uuid.uuid4()),
            NOW - timedelta(days=3),
        )


async def test_sweep_sends_one_digest_to_each_idle_learner_with_reviews_due(
    topics: Settings, db_pool: asyncpg.Pool
) -> None:
    settings = topics.model_copy(update={"notification_digest_period_s": PERIOD_S})
    period = period_index(NOW, timedelta(seconds=PERIOD_S))
    await add_learner(db_pool, "due", [NOW - timedelta(hours=2), NOW - timedelta(days=1)], None)
    await add_learner(db_pool, "due-earlier-period", [NOW - timedelta(hours=1)], period - 1)
    await add_learner(db_pool, "already-told", [NOW - timedelta(hours=1)], period)
    await add_learner(db_pool, "not-yet", [NOW + timedelta(hours=1)], None)
    processor = NotificationsProcessor(settings)
    producer = AsyncProducer(settings)
    try:
        assert await run_idle_sweep(processor, db_pool, producer, NOW) == 2
        assert await run_idle_sweep(processor, db_pool, producer, NOW + timedelta(minutes=30)) == 0
    finally:
        producer.close(5.0)

    rows = await db_pool.fetch(
        "SELECT notification_id::text, user_id, kind, item_ids, created_at FROM notifications "
        "ORDER BY user_id"
    )
    assert [(r["user_id"], r["kind"], r["item_ids"]) for r in rows] == [
        ("due", "review_due", ["item-0", "item-1"]),
        ("due-earlier-period", "review_due", ["item-0"]),
    ]
    assert all(r["created_at"] == NOW for r in rows)
    assert [r["notification_id"] for r in rows] == [
        notice_id("t", user, "review_due", period) for user in ("due", "due-earlier-period")
    ]
    periods = await db_pool.fetch(
        "SELECT user_id, last_digest_period FROM notification_learners ORDER BY user_id"
    )
    assert {r["user_id"]: r["last_digest_period"] for r in periods} == {
        "already-told": period,
        "due": period,
        "due-earlier-period": period,
        "not-yet": None,
    }

    seen: set[str] = set()

    def both(messages: list[Any]) -> bool:
        for message in messages:
            event = notification_pb2.NotificationEvent.FromString(message.value())
            seen.add(event.envelope.event_id)
        return len(seen) >= 2

    consume_all(settings, settings.topic(Stream.NOTIFICATIONS), until=both, timeout_s=20)
    assert seen == {r["notification_id"] for r in rows}


async def test_a_running_worker_sweeps_idle_learners_on_its_timer(
    topics: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = topics.model_copy(
        update={"processor_web_port": 0, "notification_sweep_interval_s": 0.5}
    )
    now = datetime.now(UTC)
    await add_learner(db_pool, "idle", [now - timedelta(hours=1)], None)

    async def digest_sent() -> bool:
        kinds = await db_pool.fetch("SELECT kind FROM notifications WHERE user_id = 'idle'")
        return [r["kind"] for r in kinds] == ["review_due"]

    with running_worker("notifications", worker_env(settings), tmp_path / "n.log") as worker:
        await wait_for(digest_sent, what="the idle learner's digest", timeout_s=60, worker=worker)
