"""Requests ingest refuses as a whole: each answers a problem+json naming the problem,
and nothing reaches the topics.

Covers malformed protobuf and JSON, invalid UTF-8, wrong content type, empty and
oversized batches, bodies too large by Content-Length and by what arrives,
missing, bad and revoked API keys, and Redis being down (503 naming Redis: no
event is accepted without the dedup guarantee).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from infra.services import free_port
from learnstream.apikeys import IssuedApiKey, revoke_api_key
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    metrics_url,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def assert_problem(response: httpx.Response, status: int, *, mentions: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, object] = response.json()
    assert problem["status"] == status
    assert str(problem["type"]).startswith("urn:learnstream:problem:")
    assert problem["title"]
    assert mentions in str(problem["detail"]), problem["detail"]
    assert isinstance(problem["errors"], list)
    assert problem["errors"], "a refusal names the field concerned"
    return problem


def assert_nothing_published(settings: Settings) -> None:
    assert read_topics(settings, expected=0, settle_s=1.0) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "mentions"),
    [
        (b"\x0a\xff\xff\xff\xff", PROTOBUF, 400, "not a valid IngestRequest"),
        (
            protobuf_body([attempt(response="MARK")]).replace(b"MARK", b"\xff\xfe\xfd\xfc"),
            PROTOBUF,
            400,
            "UTF-8",
        ),
        (b'{"events": [', JSON, 400, "not valid JSON"),
        (b'{"events": [{"session": "\xff"}]}', JSON, 400, "not valid UTF-8"),
        (b"[]", JSON, 400, "must be an object"),
        (b'{"events": []}', JSON, 400, "no events"),
        (b"", PROTOBUF, 400, "no events"),
        (b"events", {"Content-Type": "text/plain"}, 415, "text/plain"),
        (b"{}", {}, 415, "Content-Type"),
    ],
    ids=[
        "corrupt protobuf",
        "protobuf invalid utf-8",
        "truncated json",
        "json invalid utf-8",
        "json not an object",
        "json empty batch",
        "protobuf empty batch",
        "text/plain",
        "no content type",
    ],
)
async def test_malformed_or_refused_bodies_publish_nothing(
    ingest: httpx.AsyncClient,
    api_key: IssuedApiKey,
    topics: Settings,
    body: bytes,
    headers: dict[str, str],
    status: int,
    mentions: str,
) -> None:
    response = await ingest.post("/v1/events", content=body, headers={**auth(api_key), **headers})
    assert_problem(response, status, mentions=mentions)
    assert_nothing_published(topics)


@pytest.fixture
async def small_ingest(topics: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """Ingest with small limits: 3 events and 2,048 bytes per request."""
    settings = topics.model_copy(
        update={"ingest_max_batch_events": 3, "ingest_max_body_bytes": 2048}
    )
    async with running_ingest(settings) as client:
        yield client


async def test_batch_and_body_limits(
    small_ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    headers = {**auth(api_key), **PROTOBUF}
    three = protobuf_body([attempt() for _ in range(3)])
    assert (
        parse_response(
            await small_ingest.post("/v1/events", content=three, headers=headers)
        ).accepted
        == 3
    )

    four = protobuf_body([attempt() for _ in range(4)])
    assert len(four) < 2048
    response = await small_ingest.post("/v1/events", content=four, headers=headers)
    assert_problem(response, 413, mentions="at most 3")

    big = protobuf_body([attempt(response="x" * 3000)])
    response = await small_ingest.post("/v1/events", content=big, headers=headers)
    assert_problem(response, 413, mentions="Content-Length")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only what arrives counts
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    response = await small_ingest.post("/v1/events", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, mentions="more than 2048 bytes arrived")

    assert len(read_topics(topics, expected=3, settle_s=1.0)) == 3


async def test_requests_without_a_valid_key_are_401(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    # No key cache, so the revocation below takes effect at once.
    settings = topics.model_copy(update={"api_key_cache_ttl_s": 0.0})
    body = protobuf_body([attempt()])
    async with running_ingest(settings) as client:
        cases = {
            "no key": {},
            "not an lsk key": {"Authorization": "Bearer abc.def.ghi"},
            "malformed": {"X-API-Key": "lsk_nothex_secret"},
            "unknown": {"X-API-Key": api_key.plaintext[:-4] + "AAAA"},
        }
        for case, headers in cases.items():
            response = await client.post(
                "/v1/events", content=body, headers={**headers, **PROTOBUF}
            )
            assert_problem(response, 401, mentions="API key")
            assert response.headers["WWW-Authenticate"] == "Bearer", case

        assert (
            parse_response(
                await client.post("/v1/events", content=body, headers={**auth(api_key), **PROTOBUF})
            ).accepted
            == 1
        )
        await revoke_api_key(db_pool, key_id=api_key.key_id, tenant_id=api_key.tenant_id)
        response = await client.post(
            "/v1/events", content=protobuf_body([attempt()]), headers={**auth(api_key), **PROTOBUF}
        )
        assert_problem(response, 401, mentions="revoked")
    assert len(read_topics(topics, expected=1, settle_s=1.0)) == 1


async def test_redis_down_is_503_naming_redis_and_nothing_published(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey
) -> None:
    settings = topics.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with running_ingest(settings) as client:
        response = await client.post(
            "/v1/events", content=protobuf_body([attempt()]), headers={**auth(api_key), **PROTOBUF}
        )
        problem = assert_problem(response, 503, mentions="Redis")
        assert problem["errors"] == [{"field": "redis", "reason": "unavailable"}]
        assert response.headers["Retry-After"] == str(settings.ingest_retry_after_s)

        # A batch with nothing to publish needs no dedup, so it is still answered.
        rejected = parse_response(
            await client.post(
                "/v1/events",
                content=protobuf_body([attempt(score=7.0)]),
                headers={**auth(api_key), **PROTOBUF},
            )
        )
        assert rejected.rejected == 1

        metrics = (await client.get(metrics_url(settings))).text
        assert "learnstream_ingest_dedup_unavailable 1.0" in metrics
        assert "learnstream_ingest_dedup_refusals_total 1.0" in metrics
    assert_nothing_published(topics)
