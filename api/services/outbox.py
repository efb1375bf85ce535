"""The mail outbox: account mail is a row first, a delivery later.

A request writes its mail into ``mail_outbox`` in the same transaction as the account
change the mail reports (:meth:`Outbox.enqueue`), so a committed account always has
its mail queued and a rolled-back one never mails. The sender, an asyncio task of the
API process (:meth:`Outbox.start`; woken by new mail, else every
``mail_outbox_poll_s``), claims due rows, hands each to the transport (SMTP relay or
the development mailbox, :func:`transport_for`) and marks it ``sent``; a failed
delivery is retried after :func:`retry_delay_s` and marked ``failed`` after
``mail_max_attempts`` tries. A relay that is down therefore delays mail; it never
turns a request that created an account into an error.

Several API processes share the table: a claim moves the row's ``next_attempt_at`` a
lease ahead under ``FOR UPDATE SKIP LOCKED``, so no two senders take the same mail,
and a sender that dies mid-delivery leaves the row to be retried when the lease ends.
Bodies carry single-use tokens, so a body is cleared once its mail is sent or given
up; sent and failed rows are deleted after ``mail_outbox_keep_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.services.dev_mailbox import MailboxFolder
from api.services.email import EmailSender, OutgoingEmail, SmtpEmailSender
from learnstream.db import Queryable
from learnstream.settings import Settings

log = logging.getLogger(__name__)

# Seconds a claimed row stays invisible to other senders while one delivers it.
CLAIM_LEASE_S = 120.0
# Mail claimed per pass; a pass repeats while it finds a full batch.
BATCH = 20
# Seconds between deletions of old sent and failed rows.
PURGE_EVERY_S = 3600.0


def retry_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait after the ``attempts``-th failed try (1, 2, ...): doubling from
    ``base_s``, at most ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


def transport_for(settings: Settings) -> EmailSender:
    """The delivery the settings name: the SMTP relay, or files in the development mailbox."""
    if settings.mail_transport == "mailbox":
        return MailboxFolder(settings)
    return SmtpEmailSender(settings)


@dataclass(frozen=True, slots=True)
class DeliveryPass:
    """What one pass over due mail did: counts of mails sent, rescheduled and given up."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryPass) -> DeliveryPass:
        return DeliveryPass(
            self.sent + other.sent, self.retried + other.retried, self.failed + other.failed
        )


_ENQUEUE = """
    INSERT INTO mail_outbox (tenant_id, user_id, recipient, subject, body, next_attempt_at,
                             created_at)
    SELECT (SELECT tenant_id FROM users WHERE id = $1::uuid), $1::uuid, $2, $3, $4, $5, $5
    RETURNING id
"""

_CLAIM = """
    WITH due AS (
        SELECT id FROM mail_outbox
        WHERE status = 'pending' AND next_attempt_at <= $1
        ORDER BY next_attempt_at, id LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE mail_outbox m
    SET next_attempt_at = $1 + make_interval(secs => $3), attempts = m.attempts + 1
    FROM due WHERE m.id = due.id
    RETURNING m.id, m.user_id, m.recipient, m.subject, m.body, m.attempts
"""


class Outbox:
    """Queue (``enqueue``) and deliver (``deliver_due``, or the ``start``-ed task) account mail.

    ``pool`` is the API's asyncpg pool; ``transport`` delivers one mail (raises on failure).
    """

    def __init__(self, pool: Any, transport: EmailSender, settings: Settings) -> None:
        self.pool = pool
        self.transport = transport
        self._settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()  # one pass at a time in this process
        self._purged_at = float("-inf")  # time.monotonic() of the last purge

    async def enqueue(
        self, db: Queryable, mail: OutgoingEmail, *, now: datetime | None = None
    ) -> int:
        """Write ``mail`` in ``db``'s transaction (a pool: a transaction of its own); its id."""
        now = now or datetime.now(UTC)
        outbox_id: int = await db.fetchval(
            _ENQUEUE, mail.account_id, mail.to, mail.subject, mail.body, now
        )
        return outbox_id

    async def dispatch(self) -> None:
        """After a commit that queued mail: wake the sender, or deliver now when mail is
        kept on the request path (``mail_off_request_path`` off; tests read the mailbox)."""
        if self._settings.mail_off_request_path:
            self._wake.set()
            return
        await self.deliver_due()

    async def deliver_due(self, *, now: datetime | None = None) -> DeliveryPass:
        """Deliver every mail due at ``now`` (UTC, default the clock); never raises for a
        failed delivery (the mail is rescheduled or marked failed)."""
        total = DeliveryPass()
        async with self._lock:
            while True:
                done, claimed = await self._one_batch(now or datetime.now(UTC))
                total += done
                if claimed < BATCH:
                    return total

    async def _one_batch(self, now: datetime) -> tuple[DeliveryPass, int]:
        s = self._settings
        rows = await self.pool.fetch(_CLAIM, now, BATCH, CLAIM_LEASE_S)
        done = DeliveryPass()
        for row in rows:
            mail = OutgoingEmail(
                to=row["recipient"],
                subject=row["subject"],
                body=row["body"],
                account_id=str(row["user_id"]) if row["user_id"] else None,
            )
            try:
                await self.transport.send(mail)
            except Exception as exc:
                # Any failure of the transport: the relay refused, was down or timed out.
                error = f"{type(exc).__name__}: {exc}"[:500]
                if row["attempts"] >= s.mail_max_attempts:
                    await self.pool.execute(
                        "UPDATE mail_outbox SET status = 'failed', body = '', last_error = $2 "
                        "WHERE id = $1",
                        row["id"],
                        error,
                    )
                    log.error(
                        "account mail given up after %d attempts: %s",
                        row["attempts"],
                        error,
                        extra={"outbox_id": row["id"]},
                    )
                    done += DeliveryPass(failed=1)
                else:
                    delay = retry_delay_s(
                        row["attempts"], base_s=s.mail_retry_base_s, max_s=s.mail_retry_max_s
                    )
                    await self.pool.execute(
                        "UPDATE mail_outbox SET next_attempt_at = $2, last_error = $3 "
                        "WHERE id = $1",
                        row["id"],
                        now + timedelta(seconds=delay),
                        error,
                    )
                    log.warning(
                        "account mail not delivered (attempt %d), retry in %.0f s: %s",
                        row["attempts"],
                        delay,
                        error,
                        extra={"outbox_id": row["id"]},
                    )
                    done += DeliveryPass(retried=1)
                continue
            await self.pool.execute(
                "UPDATE mail_outbox SET status = 'sent', sent_at = $2, body = '', "
                "last_error = NULL WHERE id = $1",
                row["id"],
                now,
            )
            done += DeliveryPass(sent=1)
        return done, len(rows)

    async def purge(self, *, now: datetime | None = None) -> int:
        """Delete sent and failed rows older than ``mail_outbox_keep_days``; how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self._settings.mail_outbox_keep_days)
        status = await self.pool.execute(
            "DELETE FROM mail_outbox WHERE status <> 'pending' AND created_at < $1", cutoff
        )
        return int(status.split()[-1])

    def start(self) -> None:
        """Run the sender as a task of this event loop until :meth:`aclose`."""
        if self._task is None:
            self._stopping = False
            self._wake.set()  # a first pass at once: mail left pending by an earlier run
            self._task = asyncio.create_task(self._run(), name="mail-outbox")

    async def aclose(self) -> None:
        """Stop the sender after one last pass over due mail (app shutdown)."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # no new mail: look for due retries
                await asyncio.wait_for(self._wake.wait(), self._settings.mail_outbox_poll_s)
            self._wake.clear()
            # Read before the pass: mail queued before aclose() is in the last pass.
            last = self._stopping
            await self._pass_logged()
            if last:
                return

    async def _pass_logged(self) -> None:
        try:
            await self.deliver_due()
            if time.monotonic() - self._purged_at >= PURGE_EVERY_S:
                await self.purge()
                self._purged_at = time.monotonic()
        except Exception:
            # PostgreSQL away for a moment: the next pass tries again; mail stays queued.
            log.exception("mail outbox pass failed")
