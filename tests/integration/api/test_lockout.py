"""Lockout under concurrency, over HTTP against real PostgreSQL and Redis (review finding M3).

Proves: 100+ concurrent wrong passwords (or TOTP codes) for one account get at most
``login_max_failures`` credential checks, counted by the audit rows each check writes,
not by the HTTP answers; the rest are refused with 423 before any check; and 400
concurrent requests queue on the bounded Redis pool instead of failing with 5xx.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from api.app import create_app
from api.services import mfa
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, enrol_mfa, make_user

LIMIT = 5  # the production default, as in the review
CONCURRENT = 100


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def checked_failures(pool: asyncpg.Pool, user_id: str, reason: str) -> int:
    """Credential checks that ran and failed: each writes one audit row naming its reason."""
    count: int = await pool.fetchval(
        """
        SELECT count(*) FROM audit_log
        WHERE action = 'login' AND outcome = 'failure' AND target_id = $1
          AND details->>'reason' = $2
        """,
        user_id,
        reason,
    )
    return count


async def test_concurrent_wrong_passwords_check_at_most_the_limit(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    # The production hash cost: a check that takes real time is what opened the window.
    settings = api_settings.model_copy(
        update={"login_max_failures": LIMIT, "password_hash_profile": "rfc9106_low_memory"}
    )
    user = await make_user(db_pool, settings, tenant_id="acme", roles={Role.LEARNER})
    async with client_for(settings) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/auth/login",
                    json={"tenant_id": "acme", "email": user.email, "password": f"Wrong-{i:04d}"},
                )
                for i in range(CONCURRENT)
            )
        )
        right_password = await client.post(
            "/v1/auth/login", json={"tenant_id": "acme", "email": user.email, "password": PASSWORD}
        )
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {401, 423}, statuses
    assert await checked_failures(db_pool, user.id, "wrong password") <= LIMIT
    assert statuses[401] <= LIMIT - 1
    assert right_password.status_code == 423  # the account is locked now
    locks = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'account_locked' AND target_id = $1",
        user.id,
    )
    assert locks == 1


async def test_concurrent_totp_codes_check_at_most_the_limit(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    # As many database connections as a busy deployment has, so the MFA steps overlap.
    settings = api_settings.model_copy(
        update={"login_max_failures": LIMIT, "database_pool_max": 40}
    )
    user = await make_user(db_pool, settings, tenant_id="acme", roles={Role.LEARNER})
    now = datetime.now(UTC)
    secret = await enrol_mfa(db_pool, settings, user_id=user.id, tenant_id="acme", now=now)
    # Codes no authenticator shows anywhere near now, so every check fails.
    near = {mfa.code_at(secret, now + timedelta(seconds=30 * k)) for k in range(-3, 4)}
    wrong = [f"{n:06d}" for n in range(0, 10**6, 9973) if f"{n:06d}" not in near][:CONCURRENT]
    async with client_for(settings) as client:
        challenge = await client.post(
            "/v1/auth/login", json={"tenant_id": "acme", "email": user.email, "password": PASSWORD}
        )
        assert challenge.status_code == 200, challenge.text
        mfa_token = challenge.json()["mfa_token"]
        answers = await asyncio.gather(
            *(
                client.post("/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
                for code in wrong
            )
        )
    statuses = Counter(a.status_code for a in answers)
    assert len(answers) == CONCURRENT
    assert set(statuses) == {401, 423}, statuses
    assert await checked_failures(db_pool, user.id, "wrong MFA code") <= LIMIT
    assert statuses[401] <= LIMIT - 1


async def test_400_concurrent_requests_queue_on_the_redis_pool(
    api_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    # A small pool, so that 400 requests must wait for connections, not open more.
    settings = api_settings.model_copy(
        update={"redis_max_connections": 8, "redis_pool_timeout_s": 30.0}
    )
    async with client_for(settings) as client:
        # An auth route: its per-address rate limit takes a Redis connection per request.
        answers = await asyncio.gather(
            *(
                client.post("/v1/auth/verify-email", json={"token": f"lst_unknown{i}"})
                for i in range(400)
            )
        )
    statuses = Counter(a.status_code for a in answers)
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) == {422}, statuses
