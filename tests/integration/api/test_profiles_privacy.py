"""Profiles, onboarding, and privacy export/erasure over HTTP against real PostgreSQL and Redis.

Proves: a learner saves a profile with preferences (completing two onboarding steps),
steps go in order with placement skippable; the export holds the account without
secrets plus every learner table's rows and security events; erasure deletes rows
in every learner-keyed table, the account (so sign-in fails), the learner's Redis
keys, writes a tombstone, is audited, and leaves other learners untouched.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from redis.asyncio import Redis

from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, sign_in


async def add_mastery(pool: asyncpg.Pool, tenant_id: str, user_id: str, skill_id: str) -> None:
    await pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at)
        VALUES ($1, $2, $3, 0.6, 3, 2, $4, $5)
        """,
        tenant_id,
        user_id,
        skill_id,
        uuid.uuid4(),
        datetime.now(UTC),
    )


async def test_profile_and_onboarding(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    base = f"/v1/learners/{learner.user.id}"
    fresh = (await api_client.get(f"{base}/onboarding", headers=learner.headers)).json()
    assert (fresh["next_step"], fresh["progress"]) == ("profile", 0)

    too_early = await api_client.post(
        f"{base}/onboarding/placement", json={"skipped": True}, headers=learner.headers
    )
    assert too_early.status_code == 409
    assert "profile, preferences" in too_early.json()["detail"]

    bad_zone = await api_client.put(
        f"{base}/profile",
        headers=learner.headers,
        json={"display_name": "Ada", "timezone": "Mars/Base"},
    )
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["field"] == "body.timezone"
    saved = await api_client.put(
        f"{base}/profile",
        headers=learner.headers,
        json={
            "display_name": "Ada",
            "goals": ["pass algebra"],
            "timezone": "Europe/Vienna",
            "preferences": {
                "daily_minutes": 25,
                "preferred_kinds": ["video", "question"],
                "notification_channels": ["email"],
                "quiet_hours_start": "22:00",
                "quiet_hours_end": "07:00",
            },
        },
    )
    assert saved.status_code == 200, saved.text
    profile = (await api_client.get(f"{base}/profile", headers=learner.headers)).json()
    assert profile["display_name"] == "Ada"
    assert profile["preferences"]["daily_minutes"] == 25
    assert profile["preferences"]["quiet_hours_start"] == "22:00:00"

    skipped = await api_client.post(
        f"{base}/onboarding/placement", json={"skipped": True}, headers=learner.headers
    )
    assert skipped.status_code == 200
    state = skipped.json()
    assert state["next_step"] == "first_session"
    assert state["progress"] == 0.75
    assert [s["skipped"] for s in state["steps"]] == [False, False, True, False]

    other = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="someone@example.org",
    )
    assert (await api_client.get(f"{base}/profile", headers=other.headers)).status_code == 403
    assert (
        await api_client.put(f"{base}/profile", headers=other.headers, json={"display_name": "x"})
    ).status_code == 403


async def test_export_then_erase_everywhere(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    learner = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="gone@example.org",
    )
    bystander = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="stays@example.org",
    )
    me = learner.user.id
    await api_client.put(
        f"/v1/learners/{me}/profile",
        headers=learner.headers,
        json={"display_name": "Gone", "goals": ["secret goal"]},
    )
    for user_id in (me, bystander.user.id):
        await add_mastery(db_pool, "acme", user_id, "fractions")
    redis = Redis.from_url(api_settings.redis_url)
    try:
        key = f"{api_settings.redis_namespace}:placement:acme:{me}"
        kept = f"{api_settings.redis_namespace}:placement:acme:{bystander.user.id}"
        await redis.set(key, b"x")
        await redis.set(kept, b"y")

        exported = await api_client.get(
            f"/v1/learners/{me}/privacy/export", headers=learner.headers
        )
        assert exported.status_code == 200
        body = exported.json()
        assert body["account"]["email"] == "gone@example.org"
        assert "password_hash" not in body["account"]
        assert "mfa_secret" not in body["account"]
        assert body["tables"]["learner_profiles"][0]["goals"] == ["secret goal"]
        assert [r["skill_id"] for r in body["tables"]["skill_mastery"]] == ["fractions"]
        assert any(e["action"] == "login" for e in body["security_events"])
        assert "PASSWORD" not in exported.text
        assert PASSWORD not in exported.text

        no_password = await api_client.post(
            f"/v1/learners/{me}/privacy/erasure", json={"confirm": True}, headers=learner.headers
        )
        assert no_password.status_code == 401
        erased = await api_client.post(
            f"/v1/learners/{me}/privacy/erasure",
            json={"confirm": True, "password": PASSWORD},
            headers=learner.headers,
        )
        assert erased.status_code == 200, erased.text
        report = erased.json()
        assert report["account_deleted"] is True
        assert report["rows_deleted"]["skill_mastery"] == 1
        assert report["rows_deleted"]["learner_profiles"] == 1
        # The placement key, and the rate-limit counter keyed by this user, go.
        assert report["redis_keys_deleted"] >= 1

        assert await redis.exists(key) == 0
        assert await redis.exists(kept) == 1
    finally:
        await redis.aclose()
    assert await db_pool.fetchval("SELECT count(*) FROM users WHERE id = $1", me) == 0
    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery WHERE user_id = $1", me) == 0
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM skill_mastery WHERE user_id = $1", bystander.user.id
        )
        == 1
    )
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM privacy_tombstones WHERE tenant_id = 'acme' AND subject_id = $1",
            me,
        )
        == 1
    )
    login = await api_client.post(
        "/v1/auth/login",
        json={"tenant_id": "acme", "email": "gone@example.org", "password": PASSWORD},
    )
    assert login.status_code == 401
    audited = await db_pool.fetch(
        "SELECT action FROM audit_log WHERE target_id = $1 AND action LIKE 'privacy%' ORDER BY id",
        me,
    )
    assert [r["action"] for r in audited] == ["privacy_export", "privacy_deletion"]
    # Nothing left to export: the learner is unknown now.
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    again = await api_client.get(f"/v1/learners/{me}/privacy/export", headers=admin.headers)
    assert again.status_code == 404


async def test_admin_erases_a_learner_known_only_by_events(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    # Client-app keys never act on accounts (issue 12, H2): an admin erases for the app.
    acme_admin = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN}
    )
    globex_admin = await sign_in(
        api_client, db_pool, api_settings, tenant_id="globex", roles={Role.ADMIN}
    )
    await add_mastery(db_pool, "acme", "ext-42", "fractions")
    await add_mastery(db_pool, "globex", "ext-42", "fractions")
    cross = await api_client.post(
        "/v1/learners/ext-42/privacy/erasure",
        json={"confirm": True},
        headers=globex_admin.headers,
    )
    assert cross.status_code == 200  # globex erases its own ext-42 ...
    assert (
        await db_pool.fetchval("SELECT count(*) FROM skill_mastery WHERE tenant_id = 'acme'") == 1
    )  # ... not acme's
    erased = await api_client.post(
        "/v1/learners/ext-42/privacy/erasure",
        json={"confirm": True},
        headers=acme_admin.headers,
    )
    assert erased.status_code == 200
    assert erased.json()["account_deleted"] is False
    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery") == 0
    unconfirmed = await api_client.post(
        "/v1/learners/ext-43/privacy/erasure",
        json={"confirm": False},
        headers=acme_admin.headers,
    )
    assert unconfirmed.status_code == 422


async def test_retention_finds_only_learners_inactive_past_the_tenant_window(
    db_pool: asyncpg.Pool, api_settings: Settings, tenants: tuple[str, str]
) -> None:
    from datetime import timedelta

    from api.services import privacy
    from tests.integration.api.conftest import make_user

    idle = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="idle@example.org",
    )
    active = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="active@example.org",
    )
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    await db_pool.execute("UPDATE users SET updated_at = $1", long_ago)
    await add_mastery(db_pool, "acme", active.id, "fractions")  # recent activity

    assert await privacy.learners_past_retention(db_pool, tenant_id="acme", now=now) == []
    await db_pool.execute("UPDATE tenants SET retention_days = 365 WHERE tenant_id = 'acme'")
    assert await privacy.learners_past_retention(db_pool, tenant_id="acme", now=now) == [idle.id]
    assert (
        await privacy.learners_past_retention(
            db_pool, tenant_id="acme", now=now - timedelta(days=60)
        )
        == []
    )
