"""/healthz, /readyz, /metrics and the OpenAPI document of a running ingest app.

Readiness is checked against the real services: ready with broker, topics,
Redis and PostgreSQL; 503 naming the broker when it does not answer, the topics
when they are missing, and Redis when it does not answer.
"""

from __future__ import annotations

import asyncpg
import httpx

from infra.services import free_port
from learnstream.apikeys import IssuedApiKey
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    metrics_url,
    parse_response,
    protobuf_body,
    running_ingest,
)


async def test_ready_when_every_dependency_answers(ingest: httpx.AsyncClient) -> None:
    assert (await ingest.get("/healthz")).json() == {"status": "ok"}
    response = await ingest.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"kafka": "ok", "redis": "ok", "postgresql": "ok"},
    }


async def test_not_ready_names_what_is_down(settings: Settings, db_pool: asyncpg.Pool) -> None:
    # `settings` without the `topics` fixture: the broker answers but has no input topics.
    async with running_ingest(settings) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        problem = response.json()
        assert [e["field"] for e in problem["errors"]] == ["kafka"]
        assert settings.topic("attempts") in problem["detail"]

    nothing_listens = f"127.0.0.1:{free_port()}"
    broken = settings.model_copy(
        update={
            "kafka_bootstrap": nothing_listens,
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    async with running_ingest(broken) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "Retry-After" in response.headers
        assert [e["field"] for e in response.json()["errors"]] == ["kafka", "redis"]


async def test_metrics_count_requests_events_and_publish_latency(
    ingest: httpx.AsyncClient, api_key: IssuedApiKey, topics: Settings
) -> None:
    bad = attempt(score=3.0)
    answer = parse_response(
        await ingest.post(
            "/v1/events",
            content=protobuf_body([attempt(), attempt(), bad]),
            headers={**auth(api_key), "Content-Type": "application/x-protobuf"},
        )
    )
    assert (answer.accepted, answer.rejected) == (2, 1)
    await ingest.post("/v1/events", content=b"", headers={"Content-Type": "application/json"})
    text = (await ingest.get(metrics_url(topics))).text
    expected = [
        'learnstream_ingest_events_total{kind="attempt",outcome="accepted"} 2.0',
        'learnstream_ingest_events_total{kind="attempt",outcome="rejected"} 1.0',
        'learnstream_ingest_rejections_total{field="attempt.score"} 1.0',
        'learnstream_ingest_requests_total{method="POST",route="/v1/events",status="200"} 1.0',
        'learnstream_ingest_requests_total{method="POST",route="/v1/events",status="401"} 1.0',
        "learnstream_ingest_publish_seconds_count 1.0",
        "learnstream_ingest_producer_queue_depth 0.0",
        "learnstream_ingest_producer_replacements_total 0.0",
    ]
    for line in expected:
        assert line in text, line


async def test_openapi_documents_both_body_formats(ingest: httpx.AsyncClient) -> None:
    document = (await ingest.get("/openapi.json")).json()
    operation = document["paths"]["/v1/events"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/x-protobuf", "application/json"}
    event_schema = content["application/json"]["schema"]["properties"]["events"]["items"]
    assert set(event_schema["properties"]) == {
        "attempt",
        "code_submission",
        "session",
        "placement",
        "activity",
    }
    assert set(operation["responses"]["200"]["content"]) == {
        "application/x-protobuf",
        "application/json",
    }
    assert {"400", "401", "413", "415", "503"} <= set(operation["responses"])
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
