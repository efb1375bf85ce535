"""Ingest admits only keys holding ``events:write`` (issue 12, H2).

A key issued for reading views (``views:read``) or any other scope is refused with a
403 problem naming the missing scope, and nothing is published; a key holding
``events:write`` (the default of a new key) posts as before.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from learnstream.apikeys import Scope, create_api_key
from learnstream.settings import Settings
from tests.integration.ingest.support import TENANT, attempt, auth, parse_response, protobuf_body
from tests.integration.ingest.test_refusals import (
    PROTOBUF,
    assert_nothing_published,
    assert_problem,
)


@pytest.mark.parametrize("scope", [s for s in Scope if s is not Scope.EVENTS_WRITE])
async def test_key_without_events_write_cannot_post_events(
    ingest: httpx.AsyncClient, db_pool: asyncpg.Pool, topics: Settings, scope: Scope
) -> None:
    key = await create_api_key(db_pool, tenant_id=TENANT, app_name="reader", scopes={scope})
    response = await ingest.post(
        "/v1/events", content=protobuf_body([attempt()]), headers={**auth(key), **PROTOBUF}
    )
    problem = assert_problem(response, 403, mentions="events:write")
    assert problem["errors"] == [
        {"field": "header.Authorization", "reason": "missing scope events:write"}
    ]
    assert_nothing_published(topics)


async def test_default_key_posts_events(ingest: httpx.AsyncClient, db_pool: asyncpg.Pool) -> None:
    key = await create_api_key(db_pool, tenant_id=TENANT, app_name="writer")
    assert key.scopes == {Scope.EVENTS_WRITE}
    response = await ingest.post(
        "/v1/events", content=protobuf_body([attempt()]), headers={**auth(key), **PROTOBUF}
    )
    assert response.status_code == 200, response.text
    assert parse_response(response).accepted == 1
