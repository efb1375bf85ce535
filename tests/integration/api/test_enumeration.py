"""Enumeration and mail bombing over HTTP against real PostgreSQL, Redis and SMTP (finding L4).

Proves: an address without an account locks exactly like an account (same statuses,
problem bodies and Retry-After); registering in an unknown tenant answers like a
known one and creates nothing; a reset request for an account takes as long as one
for nobody even when the mail relay is slow (the mail leaves off the request path);
account mail is capped per recipient address and per account, all kinds together.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from api.app import create_app
from api.services import accounts
from api.services.email import EmailSender, OutgoingEmail
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, Mailbox, make_user


@asynccontextmanager
async def client_for(
    settings: Settings, sender: EmailSender | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, email_sender=sender)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 41000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def unique_address(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@example.org"


def comparable(response: httpx.Response) -> tuple[int, Any, bool]:
    """What a caller sees of a refused sign-in, minus the instance URL."""
    body = response.json()
    body.pop("instance", None)
    return response.status_code, body, "retry-after" in response.headers


async def test_lockout_answers_alike_for_unknown_accounts(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    known = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address=unique_address("known"),
    )
    unknown = unique_address("unknown")
    seen: dict[str, list[httpx.Response]] = {}
    for address in (known.email, unknown):
        seen[address] = [
            await api_client.post(
                "/v1/auth/login",
                json={"tenant_id": "acme", "email": address, "password": "Wrong-pass-000"},
            )
            for _ in range(api_settings.login_max_failures + 2)
        ]
    strikes = api_settings.login_max_failures
    assert [r.status_code for r in seen[known.email]] == [401] * (strikes - 1) + [423] * 3
    assert [comparable(r) for r in seen[known.email]] == [comparable(r) for r in seen[unknown]]
    for address in (known.email, unknown):
        waits = [int(r.headers["retry-after"]) for r in seen[address] if r.status_code == 423]
        assert all(0 < wait <= api_settings.login_lockout_s for wait in waits)


async def test_register_unknown_tenant_answers_like_known(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    mailbox: Mailbox,
    tenants: tuple[str, str],
) -> None:
    await accounts.create_tenant(
        db_pool, tenant_id="closed", name="Closed School", allow_self_registration=False
    )
    answers = {}
    for tenant_id in ("acme", "nobody", "closed"):
        address = unique_address(tenant_id)
        response = await api_client.post(
            "/v1/auth/register",
            json={"tenant_id": tenant_id, "email": address, "password": PASSWORD},
        )
        answers[tenant_id] = (response.status_code, response.json(), address)
    assert answers["nobody"][:2] == answers["acme"][:2] == answers["closed"][:2]
    assert answers["acme"][0] == 202
    for tenant_id in ("nobody", "closed"):
        address = answers[tenant_id][2]
        assert await db_pool.fetchval("SELECT count(*) FROM users WHERE email = $1", address) == 0
        assert mailbox.to(address) == []
    assert await db_pool.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = 'nobody'") == 0
    assert len(mailbox.to(answers["acme"][2])) == 1  # the known tenant did register


class SlowRelay:
    """An EmailSender whose relay takes ``delay_s`` per mail (as a distant SMTP relay may)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.sent: list[OutgoingEmail] = []

    async def send(self, email: OutgoingEmail) -> None:
        await asyncio.sleep(self.delay_s)
        self.sent.append(email)


async def test_reset_request_timing_is_uniform(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    delay_s, rounds = 0.3, 7
    settings = api_settings.model_copy(
        update={
            "mail_off_request_path": True,
            "mail_per_address_per_hour": 100,
            "mail_per_account_per_hour": 100,
        }
    )
    user = await make_user(
        db_pool,
        settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address=unique_address("timed"),
    )
    relay = SlowRelay(delay_s)
    took: dict[str, list[float]] = {"known": [], "unknown": []}
    async with client_for(settings, relay) as client:
        for _ in range(rounds):
            for kind, address in (("known", user.email), ("unknown", unique_address("none"))):
                started = time.perf_counter()
                response = await client.post(
                    "/v1/auth/password-reset/request",
                    json={"tenant_id": "acme", "email": address},
                )
                took[kind].append(time.perf_counter() - started)
                assert response.status_code == 202
    # Answered alike, and the known address still got every mail (sent after answering).
    assert [m.to for m in relay.sent] == [user.email] * rounds
    # Relative, not absolute: an answer that waited for the relay would be delay_s slower.
    gap = statistics.median(took["known"]) - statistics.median(took["unknown"])
    assert gap < delay_s / 2, took


async def test_mail_is_limited_per_account(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    mailbox: Mailbox,
    tenants: tuple[str, str],
) -> None:
    cap = api_settings.mail_per_address_per_hour
    address = unique_address("bombed")
    await make_user(
        db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}, email_address=address
    )
    # The same address in a second tenant: the per-address cap spans tenants.
    await make_user(
        db_pool, api_settings, tenant_id="globex", roles={Role.LEARNER}, email_address=address
    )
    for i in range(14):  # as many as the review got into one mailbox in a minute
        tenant_id = ("acme", "globex")[i % 2]
        if i % 3 == 0:
            response = await api_client.post(
                "/v1/auth/register",
                json={"tenant_id": tenant_id, "email": address, "password": PASSWORD},
            )
        else:
            response = await api_client.post(
                "/v1/auth/password-reset/request", json={"tenant_id": tenant_id, "email": address}
            )
        assert response.status_code == 202
    subjects = {m.subject for m in mailbox.to(address)}
    assert len(mailbox.to(address)) == cap
    assert len(subjects) == 2  # reset and "already registered" mail share the cap

    # Per account: with a generous address cap, one account still gets at most its own cap.
    per_account = 2
    settings = api_settings.model_copy(
        update={"mail_per_address_per_hour": 100, "mail_per_account_per_hour": per_account}
    )
    other = await make_user(
        db_pool,
        settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address=unique_address("account"),
    )
    async with client_for(settings) as client:
        for _ in range(6):
            await client.post(
                "/v1/auth/password-reset/request", json={"tenant_id": "acme", "email": other.email}
            )
        for _ in range(api_settings.login_max_failures):  # the lock mails an unlock link
            await client.post(
                "/v1/auth/login",
                json={"tenant_id": "acme", "email": other.email, "password": "Wrong-pass-0"},
            )
    assert len(mailbox.to(other.email)) == per_account
