"""Findings of the 2026-12 attack review on sign-in and sessions, replayed over HTTP.

Proves: a password-only session cannot re-enrol or change MFA once it is on (M1);
no public default signing secret exists and a signed token for a `sub` that is not an
active account of its tenant is refused (M5); access tokens end at once on erasure,
role demotion, password reset, refresh-family revocation and sign-out, also sign-out
without the refresh token (L6); TOTP secrets are encrypted at rest, plain ones are
re-encrypted, and keys rotate (Info).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from api.app import create_app
from api.services import mfa, tokens
from api.services.principals import Role
from learnstream.exceptions import ConfigurationError
from learnstream.settings import DEV_JWT_SECRET, Settings
from tests.integration.api.conftest import (
    PASSWORD,
    Mailbox,
    SignedIn,
    enrol_mfa,
    make_user,
    sign_in,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged(secret: str, *, sub: str, tenant_id: str, settings: Settings) -> str:
    """An admin access token with MFA, as an attacker who knows ``secret`` would sign it."""
    now = int(datetime.now(UTC).timestamp())
    payload = {
        "iss": settings.jwt_issuer,
        "sub": sub,
        "tid": tenant_id,
        "roles": ["admin", "operator"],
        "mfa": True,
        "sid": str(uuid.uuid4()),
        "ver": 0,
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


async def me_status(client: httpx.AsyncClient, session: SignedIn) -> int:
    return (await client.get("/v1/users/me", headers=session.headers)).status_code


# --- M1 --------------------------------------------------------------------------------


async def test_mfa_cannot_be_reenrolled_without_mfa(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    # The victim signs in with the password only; an attacker copies that refresh token.
    victim = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    stolen_refresh = victim.tokens["refresh_token"]
    # Later the victim turns MFA on.
    secret = await enrol_mfa(
        db_pool, api_settings, user_id=victim.user.id, tenant_id="acme", now=datetime.now(UTC)
    )
    stored = await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", victim.user.id)

    # The pre-enrolment sign-in no longer yields a session ...
    refreshed = await api_client.post("/v1/auth/refresh", json={"refresh_token": stolen_refresh})
    assert refresh_refused(refreshed)
    assert await me_status(api_client, victim) == 401

    # ... and even a live password-only session (as one issued before enrolment would
    # be) cannot touch the MFA settings.
    version = await db_pool.fetchval(
        "SELECT token_version FROM users WHERE id = $1", victim.user.id
    )
    password_only, _ = tokens.issue_access_token(
        user_id=victim.user.id,
        tenant_id="acme",
        roles=frozenset({Role.TEACHER}),
        mfa_verified=False,
        session_id=str(uuid.uuid4()),
        token_version=version,
        settings=api_settings,
        now=datetime.now(UTC),
    )
    headers = bearer(password_only)
    assert (await api_client.get("/v1/users/me", headers=headers)).status_code == 200
    enrol = await api_client.post("/v1/auth/mfa/enrol", headers=headers)
    assert enrol.status_code == 401, enrol.text
    assert enrol.json()["errors"][0]["reason"] == "MFA sign-in required"
    confirm = await api_client.post(
        "/v1/auth/mfa/confirm", json={"code": "123456"}, headers=headers
    )
    assert confirm.status_code == 401
    codes = await api_client.post("/v1/auth/mfa/backup-codes", headers=headers)
    assert codes.status_code == 401
    off = await api_client.post(
        "/v1/auth/mfa/disable", json={"password": PASSWORD}, headers=headers
    )
    assert off.status_code == 401
    assert (
        await db_pool.fetchval(
            "SELECT mfa_secret FROM users WHERE id = $1 AND mfa_pending_secret IS NULL",
            victim.user.id,
        )
        == stored
    )

    # The owner, signed in with MFA, may re-enrol.
    challenge = (
        await api_client.post(
            "/v1/auth/login",
            json={"tenant_id": "acme", "email": victim.user.email, "password": PASSWORD},
        )
    ).json()
    code = mfa.code_at(secret, datetime.now(UTC) + timedelta(seconds=30))
    signed = await api_client.post(
        "/v1/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": code}
    )
    assert signed.status_code == 200, signed.text
    again = await api_client.post(
        "/v1/auth/mfa/enrol", headers=bearer(signed.json()["access_token"])
    )
    assert again.status_code == 200


def refresh_refused(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.json()["errors"][0]["field"] == (
        "body.refresh_token"
    )


# --- M5 --------------------------------------------------------------------------------


async def test_forged_token_with_public_default_secret_is_refused(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    for sub in (str(uuid.uuid4()), admin.id):
        token = forged(DEV_JWT_SECRET, sub=sub, tenant_id="acme", settings=api_settings)
        for path in ("/v1/audit", "/v1/users"):
            answer = await api_client.get(path, headers=bearer(token))
            assert answer.status_code == 401, (path, answer.text)
    # With nothing configured (the default), the signing secret is this installation's
    # own, never the documented one ...
    assert api_settings.jwt_secret is None
    assert tokens.signing_secret(api_settings) != DEV_JWT_SECRET
    # ... and no mode accepts the public one as configuration.
    with pytest.raises(ValidationError, match="public default"):
        Settings(environment="local", jwt_secret=SecretStr(DEV_JWT_SECRET))
    with pytest.raises(ValidationError, match="public default"):
        Settings(environment="test", jwt_secret=SecretStr(DEV_JWT_SECRET))


async def test_token_for_unknown_sub_is_refused(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    # Even with the real secret (a leaked key, a token minted by a tool), the account
    # must exist, in that tenant, and be active.
    secret = tokens.signing_secret(api_settings)
    admin = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    cases = {
        "random sub": forged(
            secret, sub=str(uuid.uuid4()), tenant_id="acme", settings=api_settings
        ),
        "not a uuid": forged(secret, sub="root", tenant_id="acme", settings=api_settings),
        "other tenant": forged(secret, sub=admin.id, tenant_id="globex", settings=api_settings),
    }
    for case, token in cases.items():
        answer = await api_client.get("/v1/users", headers=bearer(token))
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["errors"][0]["reason"] == "session ended"
    await db_pool.execute("UPDATE users SET status = 'disabled' WHERE id = $1", admin.id)
    disabled = forged(secret, sub=admin.id, tenant_id="acme", settings=api_settings)
    assert (await api_client.get("/v1/users", headers=bearer(disabled))).status_code == 401


# --- L6 --------------------------------------------------------------------------------


async def test_access_token_dies_on_erasure(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    mastery = f"/v1/learners/{learner.user.id}/mastery"
    assert (await api_client.get(mastery, headers=learner.headers)).status_code == 200
    erased = await api_client.post(
        f"/v1/learners/{learner.user.id}/privacy/erasure",
        json={"confirm": True, "password": PASSWORD},
        headers=learner.headers,
    )
    assert erased.status_code == 200, erased.text
    assert (await api_client.get(mastery, headers=learner.headers)).status_code == 401


async def test_access_token_dies_on_role_demotion(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER, Role.LEARNER}
    )
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    assert await me_status(api_client, teacher) == 200
    demoted = await api_client.put(
        f"/v1/users/{teacher.user.id}/roles", json={"roles": ["learner"]}, headers=admin.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert await me_status(api_client, teacher) == 401
    # The refresh token still works and carries the new roles only.
    fresh = await api_client.post(
        "/v1/auth/refresh", json={"refresh_token": teacher.tokens["refresh_token"]}
    )
    assert fresh.status_code == 200
    me = await api_client.get("/v1/users/me", headers=bearer(fresh.json()["access_token"]))
    assert me.json()["roles"] == ["learner"]
    # Adding a role does not end sessions (the user picks it up at the next refresh).
    promoted = await api_client.put(
        f"/v1/users/{teacher.user.id}/roles",
        json={"roles": ["learner", "author"]},
        headers=admin.headers,
    )
    assert promoted.status_code == 200
    assert (
        await api_client.get("/v1/users/me", headers=bearer(fresh.json()["access_token"]))
    ).status_code == 200


async def test_access_token_dies_on_password_reset(
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
        email_address="reset-me@example.org",
    )
    assert await me_status(api_client, session) == 200
    await api_client.post(
        "/v1/auth/password-reset/request",
        json={"tenant_id": "acme", "email": "reset-me@example.org"},
    )
    token = mailbox.last("reset-me@example.org", "reset").token()
    done = await api_client.post(
        "/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "Another-pass-77"},
    )
    assert done.status_code == 204
    assert await me_status(api_client, session) == 401


async def test_access_token_dies_on_refresh_family_revocation(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    first = session.tokens["refresh_token"]
    # The thief refreshes first and holds a fresh access token ...
    thief = await api_client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert thief.status_code == 200
    thief_headers = bearer(thief.json()["access_token"])
    assert (await api_client.get("/v1/users/me", headers=thief_headers)).status_code == 200
    # ... then the owner presents the spent token: the family is revoked, and so is
    # every access token it produced.
    replay = await api_client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert (await api_client.get("/v1/users/me", headers=thief_headers)).status_code == 401


async def test_logout_without_refresh_token_revokes_the_session(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    out = await api_client.post("/v1/auth/logout", json={}, headers=session.headers)
    assert out.status_code == 204
    assert await me_status(api_client, session) == 401
    refreshed = await api_client.post(
        "/v1/auth/refresh", json={"refresh_token": session.tokens["refresh_token"]}
    )
    assert refresh_refused(refreshed)


async def test_another_users_refresh_token_is_not_revoked_by_logout(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    mine = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER})
    theirs = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    out = await api_client.post(
        "/v1/auth/logout",
        json={"refresh_token": theirs.tokens["refresh_token"]},
        headers=mine.headers,
    )
    assert out.status_code == 204
    assert await me_status(api_client, theirs) == 200
    still = await api_client.post(
        "/v1/auth/refresh", json={"refresh_token": theirs.tokens["refresh_token"]}
    )
    assert still.status_code == 200


# --- Info: TOTP secrets at rest -----------------------------------------------------------


async def test_totp_secret_is_encrypted_at_rest(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    session = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    enrol = await api_client.post("/v1/auth/mfa/enrol", headers=session.headers)
    secret = enrol.json()["secret"]
    pending = await db_pool.fetchval(
        "SELECT mfa_pending_secret FROM users WHERE id = $1", session.user.id
    )
    assert pending.startswith("enc1:")
    assert secret not in pending
    now = datetime.now(UTC)
    confirmed = await api_client.post(
        "/v1/auth/mfa/confirm", json={"code": mfa.code_at(secret, now)}, headers=session.headers
    )
    assert confirmed.status_code == 200
    stored = await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", session.user.id)
    assert stored.startswith("enc1:")
    assert secret not in stored
    blob = stored.split(":")[2]
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    assert secret.encode() not in raw

    # A secret stored in plain text before encryption at rest still signs in, and is
    # re-encrypted by that sign-in.
    await db_pool.execute("UPDATE users SET mfa_secret = $2 WHERE id = $1", session.user.id, secret)
    challenge = (
        await api_client.post(
            "/v1/auth/login",
            json={"tenant_id": "acme", "email": session.user.email, "password": PASSWORD},
        )
    ).json()
    code = mfa.code_at(secret, now + timedelta(seconds=30))
    signed = await api_client.post(
        "/v1/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": code}
    )
    assert signed.status_code == 200, signed.text
    resealed = await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", session.user.id)
    assert resealed.startswith("enc1:")
    assert secret not in resealed

    # A ciphertext copied onto another account does not decrypt there.
    other = await make_user(db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER})
    ring = mfa.keyring(api_settings)
    with pytest.raises(ConfigurationError, match="another account"):
        mfa.open_sealed(resealed, user_id=other.id, ring=ring)


async def test_plain_and_old_key_totp_secrets_are_reencrypted_and_keys_rotate(
    db_pool: asyncpg.Pool, api_settings: Settings, tenants: tuple[str, str]
) -> None:
    old_key, new_key = (
        base64.b64encode(bytes([i] * 16 + list(range(16)))).decode() for i in (1, 2)
    )
    old = api_settings.model_copy(update={"mfa_encryption_keys": SecretStr(old_key)})
    rotated = api_settings.model_copy(
        update={"mfa_encryption_keys": SecretStr(f"{new_key},{old_key}")}
    )
    plain_user = await make_user(
        db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}, email_address="p@x.org"
    )
    old_user = await make_user(
        db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}, email_address="o@x.org"
    )
    secret = mfa.new_totp_secret()
    await db_pool.execute(
        "UPDATE users SET mfa_secret = $2, mfa_enabled_at = now() WHERE id = $1",
        plain_user.id,
        secret,
    )
    under_old = mfa.seal(secret, user_id=old_user.id, ring=mfa.keyring(old))
    await db_pool.execute(
        "UPDATE users SET mfa_secret = $2, mfa_enabled_at = now() WHERE id = $1",
        old_user.id,
        under_old,
    )

    assert await mfa.reseal_all(db_pool, rotated) == 2
    assert await mfa.reseal_all(db_pool, rotated) == 0  # idempotent
    new_id = mfa.keyring(rotated).current_id
    for user in (plain_user, old_user):
        stored = await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", user.id)
        assert stored.startswith(f"enc1:{new_id}:")
        assert mfa.open_sealed(stored, user_id=user.id, ring=mfa.keyring(rotated)).secret == secret
    # Once re-encrypted, the old key can go; a key missing from the list is named.
    new_only = api_settings.model_copy(update={"mfa_encryption_keys": SecretStr(new_key)})
    stored = await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", old_user.id)
    assert mfa.open_sealed(stored, user_id=old_user.id, ring=mfa.keyring(new_only)).secret == secret
    with pytest.raises(ConfigurationError, match="not in LEARNSTREAM_MFA_ENCRYPTION_KEYS"):
        mfa.open_sealed(under_old, user_id=old_user.id, ring=mfa.keyring(new_only))
    # Downgrade path: back to plain text.
    assert await mfa.reseal_all(db_pool, rotated, decrypt=True) == 2
    assert (
        await db_pool.fetchval("SELECT mfa_secret FROM users WHERE id = $1", plain_user.id)
        == secret
    )


async def test_app_signs_with_the_installation_secret_shared_by_processes(
    db_pool: asyncpg.Pool, api_settings: Settings, tenants: tuple[str, str]
) -> None:
    # Two app instances on one data directory (API workers) accept each other's tokens.
    session_app, other_app = create_app(api_settings), create_app(api_settings)
    async with (
        session_app.router.lifespan_context(session_app),
        other_app.router.lifespan_context(other_app),
    ):
        first = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=session_app, client=("127.0.0.1", 50000)),
            base_url="http://api.test",
        )
        second = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other_app, client=("127.0.0.1", 50000)),
            base_url="http://api.test",
        )
        async with first, second:
            session = await sign_in(
                first, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
            )
            assert (await second.get("/v1/users/me", headers=session.headers)).status_code == 200
    secret_file = api_settings.data_dir / "secrets" / tokens.JWT_SECRET_NAME
    assert secret_file.stat().st_mode & 0o777 == 0o600
    redis = Redis.from_url(api_settings.redis_url)
    try:  # the per-user version is cached, not re-read per request
        key = f"{api_settings.redis_namespace}:api:token-version:acme:{session.user.id}"
        assert await redis.get(key) == b"0"
    finally:
        await redis.aclose()
