"""Fixtures of the fault tests."""

from __future__ import annotations

import asyncpg
import pytest

from learnstream.apikeys import IssuedApiKey, create_api_key
from tests.integration.ingest.support import TENANT


@pytest.fixture
async def api_key(db_pool: asyncpg.Pool) -> IssuedApiKey:
    """A live ingest key of the ingest tests' tenant."""
    return await create_api_key(db_pool, tenant_id=TENANT, app_name="fault-tests")
