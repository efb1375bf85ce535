"""A Redis that does not answer turns into 503 problems, never a 500 or a hang.

Proves: /readyz names Redis; an authenticated request (its rate limit needs Redis)
gets 503 problem+json with Retry-After, while PostgreSQL-only liveness still answers.
"""

from __future__ import annotations

import asyncpg
import httpx

from api.app import create_app
from infra import services
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.settings import Settings


async def test_redis_down_is_a_503_problem(api_settings: Settings, db_pool: asyncpg.Pool) -> None:
    dead_redis = f"redis://127.0.0.1:{services.free_port()}/0"
    app = create_app(api_settings.model_copy(update={"redis_url": dead_redis}))
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="web", scopes={Scope.CONTENT_READ}
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["errors"][0]["field"] == "redis"
            response = await client.get("/v1/skills", headers={"X-API-Key": key.plaintext})
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "2"
