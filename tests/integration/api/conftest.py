"""An API client per test: the real app over ASGI, its lifespan run against the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from api.app import create_app
from learnstream.settings import Settings


@pytest.fixture
async def api_client(settings: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """httpx client bound to a fresh app; tables were emptied by ``db_pool``."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
