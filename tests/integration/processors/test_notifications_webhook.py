"""The webhook channel against a local receiver that keeps failing, on real PostgreSQL.

A delivery that fails every retry stays pending in the outbox with its attempts and
last error, and goes out on a later round once the receiver answers; a delivery not
yet due (quiet hours) is not sent early.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg

from processors.notification_delivery import (
    WEBHOOK,
    InAppInbox,
    Notice,
    WebhookChannel,
    deliver_pending,
)

NOW = datetime(2024, 5, 2, 15, 0, tzinfo=UTC)


@contextmanager
def switchable_receiver() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback receiver answering 503 while ``state['down']``; records accepted keys."""
    state: dict[str, Any] = {"down": True, "accepted": [], "refused": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            if state["down"]:
                state["refused"] += 1
                self.send_response(503)
            else:
                state["accepted"].append(self.headers["Idempotency-Key"])
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()
        server.server_close()


def notice(deliver_after: datetime) -> Notice:
    return Notice(
        notification_id=str(uuid.uuid4()),
        tenant_id="t",
        user_id="u",
        kind="milestone",
        title="Skill mastered: add",
        body="You have mastered add.",
        item_ids=(),
        channels=("in_app", WEBHOOK),
        cause_event_id=str(uuid.uuid4()),
        session_id="",
        created_at=NOW,
        deliver_after=deliver_after,
    )


async def test_failed_webhook_deliveries_stay_pending_until_the_receiver_answers(
    db_pool: asyncpg.Pool,
) -> None:
    now_due, quiet = notice(NOW), notice(NOW + timedelta(hours=8))
    async with db_pool.acquire() as conn:
        await InAppInbox().deliver(conn, [now_due, quiet])
        await conn.executemany(
            "INSERT INTO notification_deliveries (notification_id, channel, deliver_after) "
            "VALUES ($1, 'webhook', $2)",
            [(n.notification_id, n.deliver_after) for n in (now_due, quiet)],
        )
        with switchable_receiver() as (url, state):
            channel = WebhookChannel(url, attempts=3, backoff_s=0.01)
            assert await deliver_pending(conn, channel, now=NOW) == (1, 0)
            assert state["refused"] == 3  # every retry tried
            row = await conn.fetchrow(
                "SELECT attempts, delivered_at, last_error FROM notification_deliveries "
                "WHERE notification_id = $1",
                now_due.notification_id,
            )
            assert (row["attempts"], row["delivered_at"], row["last_error"]) == (
                1,
                None,
                "HTTP 503",
            )

            state["down"] = False
            assert await deliver_pending(conn, channel, now=NOW) == (1, 1)
            assert state["accepted"] == [now_due.notification_id]
            assert await deliver_pending(conn, channel, now=NOW) == (0, 0)
            # The quiet-hours one goes out only once its time has come.
            assert await deliver_pending(conn, channel, now=NOW + timedelta(hours=8)) == (1, 1)
            assert state["accepted"] == [now_due.notification_id, quiet.notification_id]
        pending = await conn.fetchval(
            "SELECT count(*) FROM notification_deliveries WHERE delivered_at IS NULL"
        )
        assert pending == 0
