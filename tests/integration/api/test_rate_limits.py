"""Rate limits over HTTP against real Redis: per API key, and per client address on auth.

Each test sends a few times the limit in quick succession; at most one window edge
can fall inside, so some request must exceed the limit in its window whatever the
clock says, and that answer must be a 429 problem with Retry-After.
"""

from __future__ import annotations

import asyncpg
import httpx

from api.app import create_app
from api.services.rate_limits import WINDOW_S
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.settings import Settings

LIMIT = 3
SENT = 4 * LIMIT


async def test_api_key_over_its_limit_gets_429_and_others_do_not(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    settings = api_settings.model_copy(update={"api_rate_limit_per_minute": LIMIT})
    busy = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="busy", scopes={Scope.CONTENT_READ}
    )
    quiet = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="quiet", scopes={Scope.CONTENT_READ}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = []
            for _ in range(SENT):
                response = await client.get("/v1/skills", headers={"X-API-Key": busy.plaintext})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    limited = response
            assert 429 in statuses
            assert statuses.count(200) <= 2 * LIMIT
            assert limited.headers["content-type"] == "application/problem+json"
            assert 1 <= int(limited.headers["retry-after"]) <= WINDOW_S
            other = await client.get("/v1/skills", headers={"X-API-Key": quiet.plaintext})
            assert other.status_code == 200


async def test_login_attempts_are_limited_per_address(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    settings = api_settings.model_copy(update={"api_auth_rate_limit_per_minute": LIMIT})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = [
                (
                    await client.post(
                        "/v1/auth/login",
                        json={"tenant_id": "acme", "email": "x@example.org", "password": "y"},
                    )
                ).status_code
                for _ in range(SENT)
            ]
    assert 429 in statuses
    # 423: the unknown address locks after login_max_failures like an account would.
    assert set(statuses) <= {401, 423, 429}
