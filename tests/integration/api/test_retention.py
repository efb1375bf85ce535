"""Tenant retention: admins set it over HTTP (validated, audited); ``python -m api.retention``
erases the learners inactive past it, through the audited erasure, against the real
PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import make_user, sign_in
from tests.integration.processors.support import worker_env


async def test_admins_set_retention_within_range_and_it_is_audited(
    api_client: httpx.AsyncClient,
    api_settings: Settings,
    db_pool: asyncpg.Pool,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    url = "/v1/tenants/me/retention"

    initial = await api_client.get(url, headers=admin.headers)
    assert initial.status_code == 200
    assert initial.json() == {"retention_days": None}
    for days in (0, 29, 3651):
        refused = await api_client.put(url, json={"retention_days": days}, headers=admin.headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "body.retention_days"
    for days in (365, 30, 3650):
        saved = await api_client.put(url, json={"retention_days": days}, headers=admin.headers)
        assert saved.status_code == 200
        assert saved.json() == {"retention_days": days}
    assert (await api_client.get(url, headers=admin.headers)).json() == {"retention_days": 3650}
    stored = await db_pool.fetch("SELECT tenant_id, retention_days FROM tenants ORDER BY 1")
    assert [(r["tenant_id"], r["retention_days"]) for r in stored] == [
        ("acme", 3650),
        ("globex", None),
    ]
    denied = await api_client.put(url, json={"retention_days": 90}, headers=teacher.headers)
    assert denied.status_code == 403, denied.text
    cleared = await api_client.put(url, json={"retention_days": None}, headers=admin.headers)
    assert cleared.status_code == 200
    assert cleared.json() == {"retention_days": None}

    changes = await db_pool.fetch(
        "SELECT actor_id, details FROM audit_log WHERE action = 'retention_changed' ORDER BY id"
    )
    assert [r["actor_id"] for r in changes] == [admin.user.id] * 4
    assert json.loads(changes[0]["details"]) == {"from_days": None, "to_days": 365}
    assert json.loads(changes[-1]["details"]) == {"from_days": 3650, "to_days": None}


def run_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.retention", *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_retention_command_erases_only_learners_past_their_tenants_window(
    api_client: httpx.AsyncClient,
    api_settings: Settings,
    db_pool: asyncpg.Pool,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    users = {}
    for tenant, who in (
        ("acme", "idle"),
        ("acme", "active"),
        ("globex", "idle"),
        ("acme", "idle-teacher"),
    ):
        users[(tenant, who)] = await make_user(
            db_pool,
            api_settings,
            tenant_id=tenant,
            roles={Role.TEACHER} if who == "idle-teacher" else {Role.LEARNER},
            email_address=f"{who}.{tenant}@example.org",
        )
    long_ago = datetime.now(UTC) - timedelta(days=400)
    for (_, who), user in users.items():
        await db_pool.execute(
            "UPDATE users SET updated_at = $2 WHERE id = $1",
            user.id,
            long_ago if who.startswith("idle") else datetime.now(UTC),
        )
    idle = users[("acme", "idle")].id
    await db_pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at, updated_at)
        VALUES ('acme', $1, 'fractions', 0.5, 2, 1, gen_random_uuid(), $2, $2)
        """,
        idle,
        long_ago,
    )
    set_to = await api_client.put(
        "/v1/tenants/me/retention", json={"retention_days": 365}, headers=admin.headers
    )
    assert set_to.status_code == 200, set_to.text

    dry = run_cli(api_settings, "--dry-run")
    assert f"would erase acme/{idle}" in dry
    assert dry.strip().endswith("would erase 1 learner(s) in 1 tenant(s) with a retention set")
    assert await db_pool.fetchval("SELECT count(*) FROM users WHERE id = $1", idle) == 1

    done = run_cli(api_settings)
    assert f"erased acme/{idle}: 1 rows, account=yes" in done, done
    assert done.strip().endswith("erased 1 learner(s) in 1 tenant(s) with a retention set")
    remaining = {r["id"] for r in await db_pool.fetch("SELECT id::text AS id FROM users")}
    assert idle not in remaining
    # The idle teacher is past retention too, but staff accounts are not erased.
    kept = {users[k].id for k in (("acme", "active"), ("globex", "idle"), ("acme", "idle-teacher"))}
    assert kept | {admin.user.id} <= remaining
    assert (
        await db_pool.fetchval("SELECT count(*) FROM skill_mastery WHERE user_id = $1", idle) == 0
    )
    tombstone = await db_pool.fetchrow(
        "SELECT tenant_id, requested_by FROM privacy_tombstones WHERE subject_id = $1", idle
    )
    assert tombstone is not None
    assert tuple(tombstone) == ("acme", "retention")
    audited = await db_pool.fetch(
        "SELECT actor_kind, actor_id, target_id FROM audit_log WHERE action = 'privacy_deletion'"
    )
    assert [tuple(r) for r in audited] == [("system", "retention", idle)]
