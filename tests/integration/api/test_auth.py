"""Accounts over HTTP against real PostgreSQL, Redis and a local SMTP receiver.

Proves: registration mails a single-use verification token and login waits for it;
a taken address gets the same answer and a different mail; refresh tokens rotate
and a replayed one revokes its family; sign-out kills the access token; password
reset tokens are single-use and expire; repeated failures lock the account, with
unlock by mailed token, by reset and by admin; TOTP enrolment, sign-in with codes
and one-time backup codes; admin powers need an MFA sign-in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from api.exceptions import InvalidInputError
from api.services import accounts, mfa, recovery
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, Mailbox, enrol_mfa, make_user, sign_in


async def register(client: httpx.AsyncClient, address: str, password: str = PASSWORD) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"tenant_id": "acme", "email": address, "password": password, "display_name": "Ada"},
    )
    assert response.status_code == 202, response.text


async def login(
    client: httpx.AsyncClient, address: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/v1/auth/login", json={"tenant_id": "acme", "email": address, "password": password}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_verify_login_me(
    api_client: httpx.AsyncClient, mailbox: Mailbox, tenants: tuple[str, str]
) -> None:
    await register(api_client, "ada@example.org")

    refused = await login(api_client, "ada@example.org")
    assert refused.status_code == 403
    assert refused.json()["errors"][0] == {"field": "body.email", "reason": "email not verified"}

    token = mailbox.last("ada@example.org", "confirm").token()
    verified = await api_client.post("/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200
    again = await api_client.post("/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 422  # single use
    assert again.json()["errors"][0]["field"] == "body.token"

    signed_in = await login(api_client, "ada@example.org")
    assert signed_in.status_code == 200
    body = signed_in.json()
    assert body["mfa_required"] is False
    assert body["token_type"] == "bearer"
    me = await api_client.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.org"
    assert me.json()["roles"] == ["learner"]
    assert me.json()["id"] == verified.json()["user_id"]


async def test_taken_address_gets_same_answer_and_a_different_mail(
    api_client: httpx.AsyncClient, mailbox: Mailbox, tenants: tuple[str, str], db_pool: asyncpg.Pool
) -> None:
    await register(api_client, "bob@example.org")
    await register(api_client, "BOB@example.org")  # same address, other case
    assert await db_pool.fetchval("SELECT count(*) FROM users") == 1
    assert mailbox.last("BOB@example.org", "already have").body


async def test_weak_password_and_bad_email_name_the_field(
    api_client: httpx.AsyncClient, tenants: tuple[str, str]
) -> None:
    weak = await api_client.post(
        "/v1/auth/register",
        json={"tenant_id": "acme", "email": "c@example.org", "password": "aaaaaaaaaaaa"},
    )
    assert weak.status_code == 422
    assert weak.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in weak.json()["errors"]} == {"body.password"}
    bad_email = await api_client.post(
        "/v1/auth/register",
        json={"tenant_id": "acme", "email": "not-an-email", "password": PASSWORD},
    )
    assert bad_email.status_code == 422
    assert bad_email.json()["errors"][0]["field"] == "body.email"
    # An unknown tenant answers like a known one: test_enumeration.py.


async def test_refresh_rotates_and_reuse_revokes_the_family(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    first = session.tokens["refresh_token"]

    rotated = await api_client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    assert (
        await api_client.get("/v1/users/me", headers=bearer(rotated.json()["access_token"]))
    ).status_code == 200

    replay = await api_client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # The legitimate successor dies with the family.
    after = await api_client.post("/v1/auth/refresh", json={"refresh_token": second})
    assert after.status_code == 401
    reused = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'refresh_token_reused'"
    )
    assert reused == 1


async def test_logout_revokes_access_and_refresh(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    out = await api_client.post(
        "/v1/auth/logout",
        json={"refresh_token": session.tokens["refresh_token"]},
        headers=session.headers,
    )
    assert out.status_code == 204
    assert (await api_client.get("/v1/users/me", headers=session.headers)).status_code == 401
    refreshed = await api_client.post(
        "/v1/auth/refresh", json={"refresh_token": session.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_password_reset_is_single_use_and_signs_out_everywhere(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    mailbox: Mailbox,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="eve@example.org",
    )
    for address in ("eve@example.org", "nobody@example.org"):
        response = await api_client.post(
            "/v1/auth/password-reset/request", json={"tenant_id": "acme", "email": address}
        )
        assert response.status_code == 202  # same answer whether or not there is an account
    assert mailbox.to("nobody@example.org") == []
    token = mailbox.last("eve@example.org", "reset").token()

    new_password = "Another-pass-77"
    weak = await api_client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422  # refused before spending the token
    done = await api_client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204
    again = await api_client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "Third-pass-99x"}
    )
    assert again.status_code == 422

    assert (await login(api_client, "eve@example.org")).status_code == 401
    assert (await login(api_client, "eve@example.org", new_password)).status_code == 200
    old_refresh = await api_client.post(
        "/v1/auth/refresh", json={"refresh_token": session.tokens["refresh_token"]}
    )
    assert old_refresh.status_code == 401


async def test_reset_token_expires(
    db_pool: asyncpg.Pool, redis: Redis, api_settings: Settings, tenants: tuple[str, str]
) -> None:
    user = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER})
    issued_at = datetime(2024, 1, 1, tzinfo=UTC)
    token = await accounts.issue_account_token(
        db_pool,
        user_id=user.id,
        purpose=accounts.TokenPurpose.RESET_PASSWORD,
        ttl_s=api_settings.password_reset_ttl_s,
        now=issued_at,
    )
    late = issued_at + timedelta(seconds=api_settings.password_reset_ttl_s + 1)
    with pytest.raises(InvalidInputError):
        await recovery.reset_password(
            db_pool,
            redis,
            api_settings,
            token=token,
            new_password="Fresh-pass-123",
            ip=None,
            now=late,
        )
    in_time = issued_at + timedelta(seconds=api_settings.password_reset_ttl_s - 1)
    assert (
        await recovery.reset_password(
            db_pool,
            redis,
            api_settings,
            token=token,
            new_password="Fresh-pass-123",
            ip=None,
            now=in_time,
        )
        == user.id
    )


async def test_newer_reset_mail_voids_the_older_one(
    db_pool: asyncpg.Pool, api_settings: Settings, tenants: tuple[str, str]
) -> None:
    user = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER})
    purpose = accounts.TokenPurpose.RESET_PASSWORD
    now = datetime.now(UTC)
    older = await accounts.issue_account_token(
        db_pool, user_id=user.id, purpose=purpose, ttl_s=600, now=now
    )
    newer = await accounts.issue_account_token(
        db_pool, user_id=user.id, purpose=purpose, ttl_s=600, now=now + timedelta(seconds=1)
    )
    later = now + timedelta(seconds=2)
    with pytest.raises(InvalidInputError):
        await accounts.consume_account_token(db_pool, token=older, purpose=purpose, now=later)
    consumed = await accounts.consume_account_token(
        db_pool, token=newer, purpose=purpose, now=later
    )
    assert consumed == user.id


async def test_lockout_after_repeated_failures_and_the_unlock_paths(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    mailbox: Mailbox,
    tenants: tuple[str, str],
) -> None:
    user = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="lou@example.org",
    )
    strikes = api_settings.login_max_failures
    answers = [
        (await login(api_client, user.email, "Wrong-pass-000")).status_code for _ in range(strikes)
    ]
    assert answers == [401] * (strikes - 1) + [423]
    locked = await login(api_client, user.email)  # even the right password is refused now
    assert locked.status_code == 423
    assert int(locked.headers["retry-after"]) > 0
    assert "unlock" in locked.json()["detail"]

    unlock_token = mailbox.last(user.email, "locked").token()
    assert (
        await api_client.post("/v1/auth/unlock", json={"token": unlock_token})
    ).status_code == 204
    assert (await login(api_client, user.email)).status_code == 200
    assert (
        await api_client.post("/v1/auth/unlock", json={"token": unlock_token})
    ).status_code == 422

    # Lock again; this time an admin (MFA-signed-in) unlocks.
    for _ in range(strikes):
        await login(api_client, user.email, "Wrong-pass-000")
    assert (await login(api_client, user.email)).status_code == 423
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    unlocked = await api_client.post(f"/v1/users/{user.id}/unlock", headers=admin.headers)
    assert unlocked.status_code == 204
    assert (await login(api_client, user.email)).status_code == 200

    actions = [
        r["action"]
        for r in await db_pool.fetch(
            "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", user.id
        )
    ]
    assert actions.count("account_locked") == 2
    assert actions.count("account_unlocked") == 2


async def test_totp_enrolment_login_and_backup_codes(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="mia@example.org",
    )
    enrol = await api_client.post("/v1/auth/mfa/enrol", headers=session.headers)
    assert enrol.status_code == 200
    secret = enrol.json()["secret"]
    assert enrol.json()["provisioning_uri"].startswith("otpauth://totp/")
    wrong = await api_client.post(
        "/v1/auth/mfa/confirm", json={"code": "000000"}, headers=session.headers
    )
    assert wrong.status_code == 422
    now = datetime.now(UTC)
    confirmed = await api_client.post(
        "/v1/auth/mfa/confirm", json={"code": mfa.code_at(secret, now)}, headers=session.headers
    )
    assert confirmed.status_code == 200
    backup_codes = confirmed.json()["backup_codes"]
    assert len(backup_codes) == mfa.BACKUP_CODE_COUNT

    challenge = (await login(api_client, "mia@example.org")).json()
    assert challenge["mfa_required"] is True
    # The code just used for enrolment cannot be replayed.
    replay = await api_client.post(
        "/v1/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "code": mfa.code_at(secret, now)},
    )
    assert replay.status_code == 401
    next_code = mfa.code_at(secret, now + timedelta(seconds=30))
    ok = await api_client.post(
        "/v1/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": next_code}
    )
    assert ok.status_code == 200
    assert ok.json()["mfa_verified"] is True

    challenge = (await login(api_client, "mia@example.org")).json()
    with_backup = await api_client.post(
        "/v1/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "backup_code": backup_codes[0].upper()},
    )
    assert with_backup.status_code == 200
    challenge = (await login(api_client, "mia@example.org")).json()
    spent = await api_client.post(
        "/v1/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "backup_code": backup_codes[0]},
    )
    assert spent.status_code == 401
    assert spent.json()["errors"][0]["field"] == "body.backup_code"

    # Disabling needs an MFA session and the password.
    mfa_headers = bearer(with_backup.json()["access_token"])
    not_mfa = await api_client.post(
        "/v1/auth/mfa/disable", json={"password": PASSWORD}, headers=session.headers
    )
    assert not_mfa.status_code == 401
    off = await api_client.post(
        "/v1/auth/mfa/disable", json={"password": PASSWORD}, headers=mfa_headers
    )
    assert off.status_code == 204
    assert (await login(api_client, "mia@example.org")).json()["mfa_required"] is False


async def test_wrong_mfa_codes_count_towards_lockout(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    user = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER})
    await enrol_mfa(db_pool, api_settings, user_id=user.id, tenant_id="acme", now=datetime.now(UTC))
    statuses = []
    for _ in range(api_settings.login_max_failures):
        # Re-entering the right password must not reset the count of wrong codes.
        challenge = (await login(api_client, user.email)).json()
        answer = await api_client.post(
            "/v1/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": "123456"}
        )
        statuses.append(answer.status_code)
    assert statuses[-1] == 423
    assert (await login(api_client, user.email)).status_code == 423


async def test_admin_powers_need_an_mfa_sign_in(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.ADMIN},
        email_address="root@example.org",
    )
    tokens = (await login(api_client, admin.email)).json()
    assert tokens["mfa_required"] is False  # not enrolled yet: may sign in to enrol
    refused = await api_client.get("/v1/users", headers=bearer(tokens["access_token"]))
    assert refused.status_code == 403
    assert "MFA" in refused.json()["detail"]

    enrol = await api_client.post("/v1/auth/mfa/enrol", headers=bearer(tokens["access_token"]))
    secret = enrol.json()["secret"]
    now = datetime.now(UTC)
    await api_client.post(
        "/v1/auth/mfa/confirm",
        json={"code": mfa.code_at(secret, now)},
        headers=bearer(tokens["access_token"]),
    )
    challenge = (await login(api_client, admin.email)).json()
    mfa_tokens = (
        await api_client.post(
            "/v1/auth/login/mfa",
            json={
                "mfa_token": challenge["mfa_token"],
                "code": mfa.code_at(secret, now + timedelta(seconds=30)),
            },
        )
    ).json()
    allowed = await api_client.get("/v1/users", headers=bearer(mfa_tokens["access_token"]))
    assert allowed.status_code == 200
    assert [u["email"] for u in allowed.json()["items"]] == ["root@example.org"]
