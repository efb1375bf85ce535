"""API test fixtures: the real app over ASGI against the test database and Redis, a local
SMTP receiver (aiosmtpd) catching account mail, and helpers to make signed-in users.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from api.app import create_app
from api.services import accounts, mfa
from api.services.principals import Role
from infra import services
from learnstream.settings import Settings

PASSWORD = "Correct-horse-42"
TOKEN_IN_MAIL = re.compile(r"\b(lst_[A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str

    def token(self) -> str:
        match = TOKEN_IN_MAIL.search(self.body)
        assert match, f"no token in mail {self.subject!r}"
        return match[1]


class Mailbox:
    """What the local SMTP receiver got, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        mail = Mail(
            to=", ".join(envelope.rcpt_tos),
            subject=str(parsed["Subject"]),
            body=body.get_content() if body else "",
        )
        with self._lock:
            self._mails.append(mail)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self._mails if m.to.lower() == address.lower()]

    def last(self, address: str, subject_has: str) -> Mail:
        found = [m for m in self.to(address) if subject_has.lower() in m.subject.lower()]
        assert found, f"no mail to {address} about {subject_has!r}: {self.to(address)}"
        return found[-1]


@pytest.fixture(scope="session")
def smtp_receiver() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = services.free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_receiver: tuple[Mailbox, int]) -> Mailbox:
    return smtp_receiver[0]


@pytest.fixture
def api_settings(settings: Settings, smtp_receiver: tuple[Mailbox, int]) -> Settings:
    """Test settings: cheap argon2 (speed only), mail to the local receiver, 3-strike lockout."""
    return settings.model_copy(
        update={
            "password_hash_profile": "cheapest",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_receiver[1],
            "login_max_failures": 3,
            "login_lockout_s": 600,
            # Tests sign in many users from one address; the limit has its own test.
            "api_auth_rate_limit_per_minute": 10_000,
            # Tests read the mailbox right after a request; off-path mail has its own test.
            "mail_off_request_path": False,
        }
    )


@pytest.fixture
async def api_client(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """httpx client bound to a fresh app; tables were emptied by ``db_pool``."""
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest.fixture
async def redis(api_settings: Settings) -> AsyncIterator[Redis]:
    """A Redis client on the test server (keys under ``api_settings.redis_namespace``)."""
    client = Redis.from_url(api_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def tenants(db_pool: asyncpg.Pool) -> tuple[str, str]:
    """Two tenants, "acme" and "globex"."""
    await accounts.create_tenant(db_pool, tenant_id="acme", name="Acme School")
    await accounts.create_tenant(db_pool, tenant_id="globex", name="Globex Academy")
    return "acme", "globex"


@dataclass(frozen=True)
class SignedIn:
    user: accounts.User
    headers: dict[str, str]
    tokens: dict[str, Any]


async def make_user(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    tenant_id: str,
    roles: set[Role],
    email_address: str | None = None,
) -> accounts.User:
    """A verified account created through the service, with ``PASSWORD``."""
    address = email_address or f"{'-'.join(sorted(roles))}.{tenant_id}@example.org"
    return await accounts.create_user(
        pool,
        settings,
        tenant_id=tenant_id,
        email_address=address,
        password=PASSWORD,
        roles=frozenset(roles),
        email_verified=True,
        now=datetime.now(UTC),
    )


async def enrol_mfa(
    pool: asyncpg.Pool, settings: Settings, *, user_id: str, tenant_id: str, now: datetime
) -> str:
    """Enrol TOTP for a user through the service (as a first enrolment); returns the secret.

    The enrolment spends the TOTP step of ``now``: sign in with the code 30 s on.
    """
    enrolment = await mfa.begin_enrolment(pool, user_id=user_id, issuer="test", settings=settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        await mfa.confirm_enrolment(
            pool,
            redis,
            settings,
            tenant_id=tenant_id,
            user_id=user_id,
            code=mfa.code_at(enrolment.secret, now),
            ip=None,
            now=now,
        )
    finally:
        await redis.aclose()
    return enrolment.secret


async def sign_in(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    tenant_id: str,
    roles: set[Role],
    email_address: str | None = None,
) -> SignedIn:
    """Create a user and sign in over HTTP; users whose roles need MFA enrol and use it."""
    user = await make_user(
        pool, settings, tenant_id=tenant_id, roles=roles, email_address=email_address
    )
    now = datetime.now(UTC)
    secret = None
    if mfa.mfa_required(frozenset(roles)):
        secret = await enrol_mfa(pool, settings, user_id=user.id, tenant_id=tenant_id, now=now)
    response = await client.post(
        "/v1/auth/login",
        json={"tenant_id": tenant_id, "email": user.email, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    if body["mfa_required"]:
        assert secret is not None
        # The enrolment spent the current step; an authenticator shows the next one 30 s on.
        code = mfa.code_at(secret, datetime.now(UTC) + timedelta(seconds=30))
        response = await client.post(
            "/v1/auth/login/mfa", json={"mfa_token": body["mfa_token"], "code": code}
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return SignedIn(user, {"Authorization": f"Bearer {body['access_token']}"}, body)
