"""Fixtures of the ingest integration tests: a live API key and an app whose topics exist."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from learnstream.apikeys import IssuedApiKey, create_api_key
from learnstream.settings import Settings
from tests.integration.ingest.support import TENANT, running_ingest


@pytest.fixture
async def api_key(db_pool: asyncpg.Pool) -> IssuedApiKey:
    """A live key of tenant ``school-1``."""
    return await create_api_key(db_pool, tenant_id=TENANT, app_name="integration-tests")


@pytest.fixture
async def ingest(topics: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an ingest app whose topics exist."""
    async with running_ingest(topics) as client:
        yield client
