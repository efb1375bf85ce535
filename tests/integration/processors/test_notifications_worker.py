"""The notifications worker on the real broker and PostgreSQL, with a real webhook receiver.

Proves: MasteryUpdated events from real ASSISTments attempts (spaced over days in
event time) give exactly the ``notifications`` inbox and NotificationEvents of a pure
replay (:func:`processors.notifications.chain_notifications`); review digests are at
most one per learner per period and list every due item; learners' preferences from
``learner_profiles`` are respected (channels, quiet hours); every webhook
notification reaches a local HTTP receiver on a free loopback port, even when the
receiver first answers 500 (retries), with its notification_id as Idempotency-Key.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from learnstream.events.v1 import notification_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import app_id
from processors.events import LearnerKey, MasteryStep
from processors.notification_delivery import IN_APP, WEBHOOK, Notice
from processors.notifications import NotifyRow, Preferences, chain_notifications
from scheduler.notify import NotifyConfig, in_quiet_hours, period_index
from tests.integration.processors.crash import produce_in_order
from tests.integration.processors.streams import mastery_records
from tests.integration.processors.support import (
    DATASET,
    TENANT,
    AttemptSpec,
    consume_all,
    offsets_reached,
    running_worker,
    wait_for,
    worker_env,
)
from tests.integration.processors.test_recommendations_worker import (
    spaced_specs,
    steps_of,
    write_due_reviews,
)

ViewRow = tuple[Any, ...]
QUIET = (time(22, 0), time(7, 0))
PERIOD = timedelta(hours=12)


def uuid_learners(specs: Sequence[AttemptSpec]) -> list[AttemptSpec]:
    """The same attempts with UUID user ids (learner_profiles keys users by UUID)."""
    return [
        replace(s, user_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"learner/{s.user_id}")))
        for s in specs
    ]


async def write_profiles(
    pool: asyncpg.Pool, specs: Sequence[AttemptSpec], rng: random.Random
) -> dict[LearnerKey, Preferences]:
    """Users and profiles for most learners: webhook for some, quiet hours for some."""
    await pool.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", TENANT
    )
    preferences: dict[LearnerKey, Preferences] = {}
    for user_id in sorted({s.user_id for s in specs}):
        await pool.execute(
            "INSERT INTO users (id, tenant_id, email) VALUES ($1::uuid, $2, $3)",
            user_id,
            TENANT,
            f"{user_id}@example.org",
        )
        if rng.random() < 0.2:
            continue  # no profile: in-app only, no quiet hours
        channels = (IN_APP, WEBHOOK) if rng.random() < 0.6 else (IN_APP,)
        quiet = QUIET if rng.random() < 0.5 else None
        zone = rng.choice(["Europe/Paris", "America/New_York", "UTC"])
        await pool.execute(
            "INSERT INTO learner_profiles (tenant_id, user_id, notification_channels, "
            "quiet_hours_start, quiet_hours_end, timezone) VALUES ($1, $2::uuid, $3, $4, $5, $6)",
            TENANT,
            user_id,
            list(channels),
            quiet[0] if quiet else None,
            quiet[1] if quiet else None,
            zone,
        )
        preferences[LearnerKey(TENANT, user_id)] = Preferences(channels, quiet, zone)
    return preferences


def expected_notices(
    steps: Sequence[MasteryStep],
    due: dict[LearnerKey, dict[str, datetime]],
    preferences: dict[LearnerKey, Preferences],
    config: NotifyConfig,
) -> tuple[list[Notice], dict[LearnerKey, NotifyRow]]:
    rows: dict[LearnerKey, NotifyRow] = {}
    return chain_notifications(steps, rows, due, preferences, config), rows


def view_of(notices: Sequence[Notice]) -> set[ViewRow]:
    """The inbox rows the notices give (first one per id, as ON CONFLICT DO NOTHING)."""
    first: dict[str, Notice] = {}
    for n in notices:
        first.setdefault(n.notification_id, n)
    return {
        (
            n.notification_id,
            n.tenant_id,
            n.user_id,
            n.kind,
            n.title,
            n.body,
            n.item_ids,
            n.channels,
            n.cause_event_id,
            n.created_at,
            n.deliver_after,
        )
        for n in first.values()
    }


async def stored_inbox(pool: asyncpg.Pool) -> set[ViewRow]:
    rows = await pool.fetch(
        "SELECT notification_id::text, tenant_id, user_id, kind, title, body, item_ids, "
        "channels, cause_event_id::text, created_at, deliver_after FROM notifications"
    )
    return {
        tuple(tuple(v) if isinstance(v, list) else v for v in r.values())  # arrays as tuples
        for r in rows
    }


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP receiver on a free loopback port; the first POST of each id gets 500."""
    received: list[dict[str, Any]] = []
    refused: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers["Idempotency-Key"]
            with lock:
                first = key not in refused
                refused.add(key)
                if not first:
                    received.append({"key": key, **json.loads(body)})
            self.send_response(500 if first else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


async def test_worker_inbox_events_preferences_and_webhook(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    rng = random.Random(11)
    mastery_topic = topics.topic(Stream.MASTERY)
    specs = uuid_learners(spaced_specs(shared_data / DATASET, students=12, limit=700))
    preferences = await write_profiles(db_pool, specs, rng)
    due = await write_due_reviews(db_pool, specs, rng)
    records = mastery_records(specs, topic=mastery_topic)
    config = NotifyConfig(digest_period=PERIOD, stall_sessions=3)
    notices, _ = expected_notices(steps_of(records, mastery_topic), due, preferences, config)
    ends = produce_in_order(
        topics, [(mastery_topic, r.key, r.value) for r in records], partition=None
    )[mastery_topic]

    with webhook_receiver() as (url, received):
        settings = topics.model_copy(
            update={
                "processor_web_port": 0,
                "notification_webhook_url": url,
                "notification_digest_period_s": int(PERIOD.total_seconds()),
                "notification_stall_sessions": 3,
                "notification_sweep_interval_s": 0,  # event time only: a replayable run
            }
        )
        group = app_id(settings, "notifications")
        hooked = {n.notification_id for n in notices if WEBHOOK in n.channels}

        async def all_delivered() -> bool:
            return {r["key"] for r in received} >= hooked

        with running_worker("notifications", worker_env(settings), tmp_path / "n.log") as worker:
            await wait_for(
                lambda: offsets_reached(db_pool, group, mastery_topic, ends),
                what="all offsets stored",
                timeout_s=120,
                worker=worker,
            )
            await wait_for(all_delivered, what="every webhook", timeout_s=60, worker=worker)

    assert await stored_inbox(db_pool) == view_of(notices)
    assert {r["key"] for r in received} == hooked
    assert all(r["key"] == r["notification_id"] for r in received)
    pending = await db_pool.fetchval(
        "SELECT count(*) FROM notification_deliveries WHERE delivered_at IS NULL"
    )
    assert pending == 0
    assert await db_pool.fetchval("SELECT bool_and(attempts >= 1) FROM notification_deliveries")

    kinds = {n.kind for n in notices}
    assert kinds == {"review_due", "milestone", "streak", "strategy_suggestion"}
    # Digests: one per learner per period at most, listing every item due at that time.
    periods = [
        (n.user_id, period_index(n.created_at, PERIOD)) for n in notices if n.kind == "review_due"
    ]
    assert len(periods) == len(set(periods))
    for n in notices:
        if n.kind == "review_due":
            key = LearnerKey(n.tenant_id, n.user_id)
            assert list(n.item_ids) == sorted(i for i, at in due[key].items() if at <= n.created_at)
    # Preferences: channels as the profile says; never delivered inside quiet hours.
    for n in notices:
        prefs = preferences.get(LearnerKey(n.tenant_id, n.user_id), Preferences())
        assert n.channels == prefs.channels
        if prefs.quiet_hours is not None:
            local = n.deliver_after.astimezone(ZoneInfo(prefs.timezone)).time()
            assert not in_quiet_hours(local, *prefs.quiet_hours)
    assert any(n.deliver_after > n.created_at for n in notices), "no notice fell in quiet hours"

    seen: dict[str, notification_pb2.NotificationEvent] = {}

    def every_event(messages: list[Any]) -> bool:
        for message in messages:
            event = notification_pb2.NotificationEvent.FromString(message.value())
            seen[event.envelope.event_id] = event
        return set(seen) >= {n.notification_id for n in notices}

    consume_all(settings, settings.topic(Stream.NOTIFICATIONS), until=every_event, timeout_s=30)
    assert set(seen) == {n.notification_id for n in notices}
    for n in notices:
        assert seen[n.notification_id].deliver_after.ToDatetime(tzinfo=UTC) == n.deliver_after
