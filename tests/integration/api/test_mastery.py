"""GET /v1/learners/{user_id}/mastery over HTTP against real PostgreSQL.

Proves: rows of skill_mastery come back with labels for the key's own tenant only;
another tenant's key gets 404; no key, a wrong key or a revoked key gets 401
as problem+json; the rejected attempt is audited.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from api.services.mastery import mastery_label
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.settings import Settings

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def insert_mastery(
    pool: asyncpg.Pool, tenant_id: str, user_id: str, skill_id: str, p: float, n: int, k: int
) -> None:
    await pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        tenant_id,
        user_id,
        skill_id,
        p,
        n,
        k,
        uuid.uuid4(),
        T0 + timedelta(minutes=n),
    )


async def test_mastery_of_own_tenant_comes_back_with_labels(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="web", scopes={Scope.VIEWS_READ}
    )
    await insert_mastery(db_pool, "acme", "u1", "fractions", 0.97, 12, 11)
    await insert_mastery(db_pool, "acme", "u1", "algebra", 0.31, 4, 1)
    await insert_mastery(db_pool, "acme", "u2", "algebra", 0.80, 5, 4)

    response = await api_client.get(
        "/v1/learners/u1/mastery", headers={"Authorization": f"Bearer {key.plaintext}"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "u1"
    assert [s["skill_id"] for s in body["skills"]] == ["algebra", "fractions"]
    algebra, fractions = body["skills"]
    assert (algebra["p_mastery"], algebra["attempts"], algebra["correct"]) == (0.31, 4, 1)
    assert algebra["label"] == mastery_label(0.31, 4).value
    assert fractions["label"] == mastery_label(0.97, 12).value
    assert datetime.fromisoformat(fractions["last_attempt_at"]) == T0 + timedelta(minutes=12)


async def test_x_api_key_header_works_too(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="web", scopes={Scope.VIEWS_READ}
    )
    await insert_mastery(db_pool, "acme", "u1", "algebra", 0.5, 2, 1)
    response = await api_client.get("/v1/learners/u1/mastery", headers={"X-API-Key": key.plaintext})
    assert response.status_code == 200
    assert len(response.json()["skills"]) == 1


async def test_other_tenants_key_gets_404(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    await insert_mastery(db_pool, "acme", "u1", "algebra", 0.5, 2, 1)
    other = await apikeys.create_api_key(
        db_pool, tenant_id="globex", app_name="web", scopes={Scope.VIEWS_READ}
    )
    response = await api_client.get(
        "/v1/learners/u1/mastery", headers={"X-API-Key": other.plaintext}
    )
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "path.user_id"
    unknown = await api_client.get(
        "/v1/learners/nobody/mastery", headers={"X-API-Key": other.plaintext}
    )
    assert unknown.status_code == 404  # same answer as for another tenant's learner


async def test_missing_wrong_or_revoked_key_is_401_problem(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="web", scopes={Scope.VIEWS_READ}
    )
    wrong_secret = key.key_id + "_" + "x" * 43
    assert await apikeys.revoke_api_key(db_pool, key_id=key.key_id, tenant_id="acme")

    for headers in ({}, {"X-API-Key": wrong_secret}, {"X-API-Key": key.plaintext}):
        response = await api_client.get("/v1/learners/u1/mastery", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        problem = response.json()
        assert problem["status"] == 401
        assert problem["errors"][0]["field"].startswith("header.")

    rejected = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'api_key_rejected' AND outcome = 'denied'"
    )
    # The wrong secret and the revoked key share a key id and a client IP: one row per
    # window (tests/integration/api/test_audit.py); a missing key is not an event.
    assert rejected == 1


async def test_health_ready_metrics_and_openapi(
    api_client: httpx.AsyncClient, api_settings: Settings
) -> None:
    assert (await api_client.get("/healthz")).json() == {"status": "ok"}
    assert (await api_client.get("/readyz")).json() == {"status": "ready"}
    metrics = await api_client.get(f"http://127.0.0.1:{api_settings.api_metrics_port}/metrics")
    assert "learnstream_api_http_requests_total" in metrics.text
    spec = (await api_client.get("/openapi.json")).json()
    assert "/v1/learners/{user_id}/mastery" in spec["paths"]


async def test_unknown_route_is_a_problem(api_client: httpx.AsyncClient) -> None:
    response = await api_client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == "/v1/nothing-here"
