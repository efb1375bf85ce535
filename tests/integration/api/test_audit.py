"""The audit log is append-only in PostgreSQL itself, and security events reach Prometheus.

Proves: UPDATE and DELETE on audit_log fail for the table owner too (trigger);
a failed login writes a row and moves learnstream_api_security_events_total;
the admin's /v1/audit view pages through the tenant's own events.
"""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from api.app import create_app
from api.services import audit
from api.services.principals import Role
from learnstream import db
from learnstream.settings import Settings
from tests.integration.api.conftest import sign_in


async def test_rows_cannot_be_changed_or_deleted(
    db_pool: asyncpg.Pool, migrated_database: Settings
) -> None:
    await audit.record(
        db_pool,
        tenant_id="acme",
        actor=("user", "u1"),
        action=audit.Action.LOGIN,
        outcome=audit.Outcome.FAILURE,
    )
    # db_pool is the services' role, which lacks the privilege outright
    # (tests/integration/learnstream/test_db_roles.py); the owner meets the trigger.
    owner = await db.connect(migrated_database, role="owner")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("UPDATE audit_log SET outcome = 'success'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("DELETE FROM audit_log")
    finally:
        await owner.close()
    assert await db_pool.fetchval("SELECT outcome FROM audit_log") == "failure"


def _security_count(action: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "learnstream_api_security_events_total", {"action": action, "outcome": outcome}
    )
    return value or 0.0


async def test_failed_login_is_audited_and_counted(
    api_client: httpx.AsyncClient,
    tenants: tuple[str, str],
    db_pool: asyncpg.Pool,
    api_settings: Settings,
) -> None:
    before = _security_count("login", "failure")
    response = await api_client.post(
        "/v1/auth/login",
        json={"tenant_id": "acme", "email": "ghost@example.org", "password": "Whatever-123"},
    )
    assert response.status_code == 401
    assert _security_count("login", "failure") == before + 1
    row = await db_pool.fetchrow("SELECT * FROM audit_log WHERE action = 'login'")
    assert row["tenant_id"] == "acme"
    assert row["actor_kind"] == "anonymous"
    assert "ghost" not in row["details"]  # an email fingerprint, never the address
    metrics = await api_client.get(f"http://127.0.0.1:{api_settings.api_metrics_port}/metrics")
    assert 'learnstream_api_security_events_total{action="login",outcome="failure"}' in (
        metrics.text
    )


async def test_admin_pages_through_own_tenant_events(
    api_client: httpx.AsyncClient,
    tenants: tuple[str, str],
    db_pool: asyncpg.Pool,
    api_settings: Settings,
) -> None:
    for tenant in ("acme", "globex"):
        for _ in range(3):
            await audit.record(
                db_pool,
                tenant_id=tenant,
                actor=None,
                action=audit.Action.ACCESS_DENIED,
                outcome=audit.Outcome.DENIED,
                details={"tenant": tenant},
            )
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    acme_total = await db_pool.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = 'acme'")
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await api_client.get("/v1/audit", params=params, headers=admin.headers)).json()
        seen.extend(entry["id"] for entry in page["items"])
        assert all(entry["details"].get("tenant") != "globex" for entry in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == acme_total
    assert seen == sorted(seen, reverse=True)


def _suppressed(action: str) -> float:
    value = REGISTRY.get_sample_value(
        "learnstream_api_audit_rows_suppressed_total", {"action": action}
    )
    return value or 0.0


async def _rejected_rows(db_pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db_pool.fetch(
        "SELECT ip, details FROM audit_log WHERE action = 'api_key_rejected' ORDER BY id"
    )
    return rows


async def test_bogus_api_keys_do_not_flood_the_audit_log(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    # A day-long window, so the 400 requests (tens of seconds on a busy machine) cannot
    # straddle a window edge; windows are aligned to the epoch.
    settings = api_settings.model_copy(update={"api_audit_window_s": 86_400})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            await _flood(client, settings, db_pool)


async def _flood(
    api_client: httpx.AsyncClient, api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    # Attack review L3: 200 requests with a bogus X-API-Key wrote 200 audit rows.
    same_key = "lsk_0123456789ab_" + "x" * 43
    before = _security_count("api_key_rejected", "denied"), _suppressed("api_key_rejected")
    for _ in range(200):
        response = await api_client.get("/v1/learners/u1/mastery", headers={"X-API-Key": same_key})
        assert response.status_code == 401
    rows = await _rejected_rows(db_pool)
    assert len(rows) == 1
    assert rows[0]["ip"] == "127.0.0.1"
    details = json.loads(rows[0]["details"])
    assert details["key_id_prefix"] == same_key[:16]
    assert details["window_s"] == api_settings.api_audit_window_s

    # A different bogus key each time: at most api_audit_rows_per_source rows per address.
    for i in range(200):
        key = f"lsk_{i:012x}_" + "y" * 43
        response = await api_client.get("/v1/learners/u1/mastery", headers={"X-API-Key": key})
        assert response.status_code == 401
    assert len(await _rejected_rows(db_pool)) == api_settings.api_audit_rows_per_source

    # Every rejection is still counted: 400 events, the rows' and the rest.
    after = _security_count("api_key_rejected", "denied"), _suppressed("api_key_rejected")
    assert after[0] - before[0] == 400
    assert after[1] - before[1] == 400 - api_settings.api_audit_rows_per_source


async def test_the_next_window_row_carries_the_count(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    throttle = audit.Throttle(api_settings.redis_namespace, window_s=60, rows_per_source=10)
    redis = Redis.from_url(api_settings.redis_url)
    try:
        for now_s in (6_000.0, 6_001.0, 6_002.0, 6_061.0):  # three in one window, then one
            await audit.record_throttled(
                db_pool,
                redis,
                throttle,
                source="192.0.2.7",
                subject="lsk_aaaaaaaaaaaa",
                now_s=now_s,
                tenant_id=None,
                actor=None,
                action=audit.Action.API_KEY_REJECTED,
                outcome=audit.Outcome.DENIED,
                ip="192.0.2.7",
            )
    finally:
        await redis.aclose()
    rows = await _rejected_rows(db_pool)
    assert [json.loads(r["details"]).get("occurrences_in_previous_window") for r in rows] == [
        None,
        3,
    ]
