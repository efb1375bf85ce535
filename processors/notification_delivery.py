"""How notifications reach a learner: the in-app inbox, the webhook outbox and its delivery.

:mod:`processors.notifications` decides the notifications (its rules) and hands them
here as :class:`Notice` values. Every notice goes to the in-app inbox
(``notifications``, :class:`InAppInbox`) in the deciding transaction; for the webhook
channel an outbox row (``notification_deliveries``) is written too
(:func:`write_notices`). After the commit :class:`WebhookOutbox` has
:class:`WebhookChannel` POST what is pending and due (with retries) and mark it
delivered (:func:`deliver_pending`). A crash between the POST and the mark repeats
the POST: the receiver dedupes by the ``Idempotency-Key`` header (the notification_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import httpx

from learnstream import db
from learnstream.settings import Settings

log = logging.getLogger(__name__)

IN_APP = "in_app"
WEBHOOK = "webhook"

_INSERT_NOTIFICATIONS = """
    INSERT INTO notifications (notification_id, tenant_id, user_id, kind, title, body,
        item_ids, channels, cause_event_id, created_at, deliver_after)
    SELECT n.notification_id, n.tenant_id, n.user_id, n.kind, n.title, n.body,
           n.item_ids::text[], n.channels::text[], n.cause_event_id, n.created_at,
           n.deliver_after
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::uuid[], $10::timestamptz[], $11::timestamptz[])
      AS n(notification_id, tenant_id, user_id, kind, title, body, item_ids, channels,
           cause_event_id, created_at, deliver_after)
    ON CONFLICT (notification_id) DO NOTHING
"""
_INSERT_DELIVERIES = """
    INSERT INTO notification_deliveries (notification_id, channel, deliver_after)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
    ON CONFLICT (notification_id, channel) DO NOTHING
"""
_PENDING_WEBHOOKS = """
    SELECT n.notification_id, n.tenant_id, n.user_id, n.kind, n.title, n.body, n.item_ids,
           n.channels, n.cause_event_id, n.created_at, n.deliver_after
    FROM notification_deliveries AS d
    JOIN notifications AS n USING (notification_id)
    WHERE d.channel = 'webhook' AND d.delivered_at IS NULL AND d.deliver_after <= $1
    ORDER BY d.deliver_after, d.notification_id
    LIMIT $2
"""
_MARK_DELIVERY = """
    UPDATE notification_deliveries
    SET attempts = attempts + 1,
        delivered_at = CASE WHEN $3 THEN now() ELSE NULL END,
        last_error = $4
    WHERE notification_id = $1 AND channel = $2
"""


_PAGE = 100  # outbox rows per delivery round


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification decided for a learner; ``notification_id`` is deterministic."""

    notification_id: str
    tenant_id: str
    user_id: str
    kind: str  # review_due | milestone | streak | strategy_suggestion
    title: str
    body: str
    item_ids: tuple[str, ...]
    channels: tuple[str, ...]
    cause_event_id: str
    session_id: str
    created_at: datetime  # UTC event time
    deliver_after: datetime  # UTC


class DeliveryChannel(Protocol):
    """One way to deliver notifications; returns the ids it delivered."""

    name: str

    async def deliver(self, conn: asyncpg.Connection, notices: Sequence[Notice]) -> list[str]:
        """Deliver ``notices``; the notification_ids that were delivered."""
        ...


class InAppInbox:
    """The in-app inbox: rows of ``notifications``, written idempotently through ``conn``."""

    name = IN_APP

    async def deliver(self, conn: asyncpg.Connection, notices: Sequence[Notice]) -> list[str]:
        """Insert ``notices`` (an existing id is left as is, read_at included)."""
        if notices:
            await conn.execute(
                _INSERT_NOTIFICATIONS,
                [n.notification_id for n in notices],
                [n.tenant_id for n in notices],
                [n.user_id for n in notices],
                [n.kind for n in notices],
                [n.title for n in notices],
                [n.body for n in notices],
                [array_literal(n.item_ids) for n in notices],
                [array_literal(n.channels) for n in notices],
                [n.cause_event_id for n in notices],
                [n.created_at for n in notices],
                [n.deliver_after for n in notices],
            )
        return [n.notification_id for n in notices]


class WebhookChannel:
    """POSTs each notification as JSON to one URL; retries with backoff, then gives up.

    ``Idempotency-Key`` carries the notification_id, so a receiver drops repeats.
    Any 2xx is delivered; other statuses and transport errors are retried
    ``attempts`` times in all, waiting ``backoff_s`` doubled each time.
    """

    name = WEBHOOK

    def __init__(
        self, url: str, *, attempts: int = 3, backoff_s: float = 0.2, timeout_s: float = 5.0
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.last_errors: dict[str, str] = {}

    async def deliver(self, conn: asyncpg.Connection, notices: Sequence[Notice]) -> list[str]:
        """POST every notice; the ids answered with a 2xx (errors in ``last_errors``)."""
        delivered: list[str] = []
        self.last_errors = {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for notice in notices:
                error = await self._post(client, notice)
                if error is None:
                    delivered.append(notice.notification_id)
                else:
                    self.last_errors[notice.notification_id] = error
        return delivered

    async def _post(self, client: httpx.AsyncClient, notice: Notice) -> str | None:
        error = "not tried"
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = await client.post(
                    self.url,
                    json=webhook_payload(notice),
                    headers={"Idempotency-Key": notice.notification_id},
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                return None
            error = f"HTTP {response.status_code}"
        return error


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The JSON body a webhook receives (timestamps ISO 8601 UTC)."""
    return {
        "notification_id": notice.notification_id,
        "tenant_id": notice.tenant_id,
        "user_id": notice.user_id,
        "kind": notice.kind,
        "title": notice.title,
        "body": notice.body,
        "item_ids": list(notice.item_ids),
        "created_at": notice.created_at.isoformat(),
        "deliver_after": notice.deliver_after.isoformat(),
    }


def array_literal(values: Sequence[str]) -> str:
    # One text[] per row through unnest: a '{"a","b"}' literal cast back in SQL.
    return "{" + ",".join(json.dumps(v, ensure_ascii=False) for v in values) + "}"


async def write_notices(
    conn: asyncpg.Connection, inbox: DeliveryChannel, notices: Sequence[Notice]
) -> None:
    """Put ``notices`` in ``inbox`` and the webhook ones in the outbox, through ``conn``.

    Runs in the caller's transaction: the rows commit with the batch (or sweep) that
    decided them, and :class:`WebhookOutbox` delivers them after the commit.
    """
    await inbox.deliver(conn, notices)
    outbox = [n for n in notices if WEBHOOK in n.channels]
    if outbox:
        await conn.execute(
            _INSERT_DELIVERIES,
            [n.notification_id for n in outbox],
            [WEBHOOK] * len(outbox),
            [n.deliver_after for n in outbox],
        )


async def deliver_pending(
    conn: asyncpg.Connection, channel: DeliveryChannel, *, now: datetime, limit: int = 100
) -> tuple[int, int]:
    """Deliver up to ``limit`` outbox rows of ``channel`` due by ``now``: (tried, delivered).

    Each row gets ``attempts + 1``; a delivered one gets ``delivered_at``, a failed one
    its ``last_error`` and stays pending for the next call.
    """
    rows = await conn.fetch(_PENDING_WEBHOOKS, now, limit)
    notices = [
        Notice(
            notification_id=str(r["notification_id"]),
            tenant_id=r["tenant_id"],
            user_id=r["user_id"],
            kind=r["kind"],
            title=r["title"],
            body=r["body"],
            item_ids=tuple(r["item_ids"]),
            channels=tuple(r["channels"]),
            cause_event_id=str(r["cause_event_id"]),
            session_id="",
            created_at=r["created_at"],
            deliver_after=r["deliver_after"],
        )
        for r in rows
    ]
    delivered = set(await channel.deliver(conn, notices))
    errors = getattr(channel, "last_errors", {})
    await conn.executemany(
        _MARK_DELIVERY,
        [
            (
                n.notification_id,
                channel.name,
                n.notification_id in delivered,
                errors.get(n.notification_id),
            )
            for n in notices
        ],
    )
    return len(notices), len(delivered)


class WebhookOutbox:
    """Delivers the committed webhook outbox (``notification_deliveries``) in the background.

    After each commit and each sweep tick the processor calls :meth:`start`; a task on
    a one-connection pool of its own pages through what is pending and due with
    :func:`deliver_pending`, so the stream never waits for a receiver. Without a
    channel (no webhook URL configured) it does nothing.
    """

    def __init__(self, settings: Settings, channel: DeliveryChannel | None) -> None:
        self.channel = channel
        self._settings = settings
        self._delivery_pool: asyncpg.Pool | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._delivery_wanted = False

    def start(self) -> None:
        """Drain the due webhook outbox in a background task (one at a time).

        In the background so a slow or failing receiver never holds up the stream; a
        call while a drain runs makes it look again once done, so rows committed
        meanwhile are not left waiting for the next commit.
        """
        if self.channel is None:
            return
        self._delivery_wanted = True
        if self._delivery_task is None or self._delivery_task.done():
            self._delivery_task = asyncio.create_task(self._drain(self.channel))

    async def _drain(self, channel: DeliveryChannel) -> None:
        try:
            if self._delivery_pool is None:
                self._delivery_pool = await db.create_pool(self._settings, max_size=1)
            async with self._delivery_pool.acquire() as conn:
                while self._delivery_wanted:
                    self._delivery_wanted = False
                    # Pages until the due backlog is empty; a page with a failure stops
                    # the round (the receiver is struggling; the next round retries).
                    while True:
                        fetched, delivered = await deliver_pending(
                            conn, channel, now=datetime.now(UTC), limit=_PAGE
                        )
                        if fetched < _PAGE or delivered < fetched:
                            break
        except Exception as exc:
            log.warning(
                "webhook delivery round failed", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    async def close(self) -> None:
        """Stop a running delivery round and close its pool (undelivered rows stay pending)."""
        if self._delivery_task is not None:
            self._delivery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery_task
        if self._delivery_pool is not None:
            await self._delivery_pool.close()
            self._delivery_pool = None
