"""The audit log is append-only in PostgreSQL itself, and security events reach Prometheus.

Proves: UPDATE and DELETE on audit_log fail for the table owner too (trigger);
a failed login writes a row and moves learnstream_api_security_events_total;
the admin's /v1/audit view pages through the tenant's own events.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from api.services import audit
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import sign_in


async def test_rows_cannot_be_changed_or_deleted(db_pool: asyncpg.Pool) -> None:
    await audit.record(
        db_pool,
        tenant_id="acme",
        actor=("user", "u1"),
        action=audit.Action.LOGIN,
        outcome=audit.Outcome.FAILURE,
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db_pool.execute("UPDATE audit_log SET outcome = 'success'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db_pool.execute("DELETE FROM audit_log")
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
