"""Account mail without a relay: the outbox against real PostgreSQL and a real SMTP server.

Proves: registration answers 202 and keeps the account when no relay listens (the mail
waits in the outbox); a failed delivery is retried with backoff and reaches a relay
(aiosmtpd on loopback) that comes up later, then its body is cleared; a mail that never
gets through is marked failed after ``mail_max_attempts``; the sender task delivers
without being asked; in local mode mail lands in the development mailbox, read with
`learnstream mail list/show`; erasure reaches the outbox.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from api.app import create_app
from api.services import accounts, privacy
from api.services.email import OutgoingEmail, SmtpEmailSender
from api.services.outbox import Outbox
from infra import cli, services
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, Mailbox


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def outbox_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch("SELECT * FROM mail_outbox ORDER BY id")
    return rows


async def test_registration_with_no_relay_answers_202_and_keeps_the_mail(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    dead = api_settings.model_copy(update={"smtp_port": services.free_port()})  # nobody listens
    async with client_for(dead) as client:
        response = await client.post(
            "/v1/auth/register",
            json={"tenant_id": "acme", "email": "new@example.org", "password": PASSWORD},
        )
        assert response.status_code == 202, response.text
        resent = await client.post(
            "/v1/auth/verify-email/resend", json={"tenant_id": "acme", "email": "new@example.org"}
        )
        assert resent.status_code == 202
    user_id = await db_pool.fetchval("SELECT id FROM users WHERE email = 'new@example.org'")
    assert user_id is not None
    rows = await outbox_rows(db_pool)
    assert [(r["user_id"], r["tenant_id"], r["status"]) for r in rows] == [
        (user_id, "acme", "pending")
    ] * 2
    assert all(r["attempts"] == 1 and "Connection refused" in r["last_error"] for r in rows)
    assert all("lst_" in r["body"] for r in rows)  # kept until it can be delivered


async def test_failed_delivery_is_retried_until_the_relay_answers(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    port = services.free_port()
    settings = api_settings.model_copy(
        update={"smtp_port": port, "mail_retry_base_s": 60.0, "mail_retry_max_s": 600.0}
    )
    user = await accounts.create_user(
        db_pool,
        settings,
        tenant_id="acme",
        email_address="late@example.org",
        password=PASSWORD,
        email_verified=True,
        now=datetime.now(UTC),
    )
    outbox = Outbox(db_pool, SmtpEmailSender(settings), settings)
    t0 = datetime.now(UTC)
    mail = OutgoingEmail("late@example.org", "Hello", "token lst_x", account_id=user.id)
    await outbox.enqueue(db_pool, mail, now=t0)

    assert (await outbox.deliver_due(now=t0)).retried == 1
    row = (await outbox_rows(db_pool))[0]
    assert row["next_attempt_at"] == t0 + timedelta(seconds=60)
    assert (await outbox.deliver_due(now=t0 + timedelta(seconds=59))).retried == 0  # not due
    assert (await outbox.deliver_due(now=t0 + timedelta(seconds=60))).retried == 1
    row = (await outbox_rows(db_pool))[0]
    assert row["attempts"] == 2
    assert row["next_attempt_at"] == t0 + timedelta(seconds=60 + 120)  # doubled

    mailbox = Mailbox()
    relay = Controller(mailbox, hostname="127.0.0.1", port=port)
    relay.start()
    try:
        done = await outbox.deliver_due(now=t0 + timedelta(seconds=180))
    finally:
        relay.stop()
    assert (done.sent, done.retried) == (1, 0)
    assert [m.subject for m in mailbox.to("late@example.org")] == ["Hello"]
    row = (await outbox_rows(db_pool))[0]
    assert (row["status"], row["attempts"], row["body"], row["last_error"]) == ("sent", 3, "", None)


async def test_mail_is_given_up_after_max_attempts(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    settings = api_settings.model_copy(
        update={"smtp_port": services.free_port(), "mail_max_attempts": 2, "mail_retry_base_s": 1.0}
    )
    outbox = Outbox(db_pool, SmtpEmailSender(settings), settings)
    t0 = datetime.now(UTC)
    await outbox.enqueue(db_pool, OutgoingEmail("x@example.org", "S", "lst_secret"), now=t0)
    assert (await outbox.deliver_due(now=t0)).retried == 1
    assert (await outbox.deliver_due(now=t0 + timedelta(seconds=5))).failed == 1
    row = (await outbox_rows(db_pool))[0]
    assert (row["status"], row["attempts"], row["body"]) == ("failed", 2, "")
    assert (
        await outbox.purge(now=t0 + timedelta(days=settings.mail_outbox_keep_days, seconds=1)) == 1
    )


async def test_sender_task_delivers_off_the_request_path(
    api_settings: Settings, db_pool: asyncpg.Pool, mailbox: Mailbox, tenants: tuple[str, str]
) -> None:
    settings = api_settings.model_copy(update={"mail_off_request_path": True})
    async with client_for(settings) as client:
        response = await client.post(
            "/v1/auth/register",
            json={"tenant_id": "acme", "email": "bg@example.org", "password": PASSWORD},
        )
        assert response.status_code == 202
        for _ in range(200):  # woken by the commit; bounded so a broken sender fails
            if mailbox.to("bg@example.org"):
                break
            await asyncio.sleep(0.05)
    assert "Confirm" in mailbox.last("bg@example.org", "confirm").subject
    assert (await outbox_rows(db_pool))[0]["status"] == "sent"


async def test_local_mode_writes_the_development_mailbox(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str], tmp_path: Path
) -> None:
    settings = api_settings.model_copy(update={"mail_delivery": "mailbox", "data_dir": tmp_path})
    async with client_for(settings) as client:
        response = await client.post(
            "/v1/auth/register",
            json={"tenant_id": "acme", "email": "dev@example.org", "password": PASSWORD},
        )
        assert response.status_code == 202
    files = list((tmp_path / "mailbox").glob("*.eml"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o077 == 0  # tokens inside: the owner's only

    listed = io.StringIO()
    assert await cli.run(cli.parse_args(["mail", "list"]), settings, listed) == 0
    assert "to dev@example.org  Confirm your Learnstream email address" in listed.getvalue()
    shown = io.StringIO()
    assert await cli.run(cli.parse_args(["mail", "show", "last"]), settings, shown) == 0
    assert "#action=verify-email&token=lst_" in shown.getvalue()
    missing = io.StringIO()
    assert await cli.run(cli.parse_args(["mail", "show", "../x.eml"]), settings, missing) == 1


async def test_erasure_reaches_the_outbox(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str], tmp_path: Path
) -> None:
    settings = api_settings.model_copy(update={"data_dir": tmp_path})
    assert "mail_outbox" in await privacy.learner_tables(db_pool)
    user = await accounts.create_user(
        db_pool,
        settings,
        tenant_id="acme",
        email_address="gone@example.org",
        password=PASSWORD,
        email_verified=True,
        now=datetime.now(UTC),
    )
    outbox = Outbox(db_pool, SmtpEmailSender(settings), settings)
    await outbox.enqueue(db_pool, OutgoingEmail(user.email, "S", "b", account_id=user.id))
    redis = Redis.from_url(settings.redis_url)
    try:
        report = await privacy.erase_learner(
            db_pool,
            redis,
            settings,
            tenant_id="acme",
            subject_id=user.id,
            requested_by=("user", user.id),
            now=datetime.now(UTC),
        )
    finally:
        await redis.aclose()
    assert report.rows_deleted["mail_outbox"] == 1
    assert await outbox_rows(db_pool) == []
