"""First run over HTTP: an admin made by `learnstream user create` signs in for the first
time through the enrolment link, sets a password, enrols TOTP with the QR code the page
shows, and only then can use the admin role. The link works once, expires, is audited.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import async_playwright
from redis.asyncio import Redis

from api.exceptions import InvalidInputError
from api.services import enrolment, mfa, provisioning
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.test_dashboard_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ServerThread,
    csp_violations,
)

NEW_PASSWORD = "First-sign-in-77"


async def make_admin(pool: asyncpg.Pool, settings: Settings) -> tuple[str, str]:
    """What the CLI does for a first admin: (user id, the enrolment token of the link)."""
    await provisioning.ensure_tenant(
        pool, tenant_id="school", name="School", allow_self_registration=False
    )
    outcome = await provisioning.ensure_user(
        pool,
        settings,
        tenant_id="school",
        email_address="head@example.org",
        roles=frozenset({Role.ADMIN}),
        display_name="Head",
        new_link=False,
        now=datetime.now(UTC),
    )
    assert outcome.link is not None
    fragment = parse_qs(urlsplit(outcome.link.url).fragment)
    assert fragment["action"] == ["enrol"]
    assert outcome.link.url.startswith(f"{settings.public_base_url}/dashboard#")
    return outcome.user.id, fragment["token"][0]


async def test_first_admin_enrols_then_needs_totp(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, api_settings: Settings
) -> None:
    user_id, token = await make_admin(db_pool, api_settings)
    credentials = {"tenant_id": "school", "email": "head@example.org", "password": NEW_PASSWORD}
    # No password yet: nothing signs in.
    assert (await api_client.post("/v1/auth/login", json=credentials)).status_code == 401

    enrolled = await api_client.post(
        "/v1/auth/enrol", json={"token": token, "password": NEW_PASSWORD}
    )
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json() == {
        "user_id": user_id,
        "tenant_id": "school",
        "email": "head@example.org",
        "mfa_required": True,
    }
    again = await api_client.post(
        "/v1/auth/enrol", json={"token": token, "password": "Other-pass-99"}
    )
    assert again.status_code == 422  # single use
    assert again.json()["errors"][0]["field"] == "body.token"

    # Password only: signed in, but the admin role does not count before TOTP.
    login = await api_client.post("/v1/auth/login", json=credentials)
    assert login.status_code == 200
    assert login.json()["mfa_required"] is False
    password_only = {"Authorization": f"Bearer {login.json()['access_token']}"}
    me = (await api_client.get("/v1/users/me", headers=password_only)).json()
    assert (me["roles"], me["mfa_enabled"]) == (["admin"], False)
    refused = await api_client.get("/v1/api-keys", headers=password_only)
    assert refused.status_code == 403
    assert "requires MFA" in refused.json()["detail"]

    # What the page does: start enrolment, show the QR code and the key, confirm a code.
    started = await api_client.post("/v1/auth/mfa/enrol", headers=password_only)
    assert started.status_code == 200
    body = started.json()
    assert ET.fromstring(body["qr_svg"]).tag == "{http://www.w3.org/2000/svg}svg"
    assert f"secret={body['secret']}" in body["provisioning_uri"]
    now = datetime.now(UTC)
    confirmed = await api_client.post(
        "/v1/auth/mfa/confirm",
        headers=password_only,
        json={"code": mfa.code_at(body["secret"], now)},
    )
    assert confirmed.status_code == 200
    assert len(confirmed.json()["backup_codes"]) == mfa.BACKUP_CODE_COUNT
    # The password-only session ended with the confirmation.
    assert (await api_client.get("/v1/users/me", headers=password_only)).status_code == 401

    challenge = await api_client.post("/v1/auth/login", json=credentials)
    assert challenge.json()["mfa_required"] is True
    signed_in = await api_client.post(
        "/v1/auth/login/mfa",
        json={
            "mfa_token": challenge.json()["mfa_token"],
            "code": mfa.code_at(body["secret"], now + timedelta(seconds=30)),
        },
    )
    assert signed_in.status_code == 200
    admin = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    assert (await api_client.get("/v1/api-keys", headers=admin)).status_code == 200

    actions = [
        r["action"]
        for r in await db_pool.fetch(
            "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", user_id
        )
    ]
    firsts = ["user_created", "enrolment_link_issued", "enrolment_completed", "mfa_enrolled"]
    assert [a for a in actions if a in firsts] == firsts


async def test_enrolment_link_expires_and_weak_passwords_do_not_spend_it(
    db_pool: asyncpg.Pool, api_settings: Settings
) -> None:
    _, token = await make_admin(db_pool, api_settings)
    redis = Redis.from_url(api_settings.redis_url)
    try:
        with pytest.raises(InvalidInputError) as weak:
            await enrolment.complete(
                db_pool,
                redis,
                api_settings,
                token=token,
                password="short",
                ip=None,
                now=datetime.now(UTC),
            )
        assert weak.value.errors[0].field.startswith("body.password")
        later = datetime.now(UTC) + timedelta(seconds=api_settings.enrolment_link_ttl_s + 1)
        with pytest.raises(
            InvalidInputError, match="enrol token is unknown, already used or expired"
        ):
            await enrolment.complete(
                db_pool,
                redis,
                api_settings,
                token=token,
                password=NEW_PASSWORD,
                ip=None,
                now=later,
            )
        done = await enrolment.complete(
            db_pool,
            redis,
            api_settings,
            token=token,
            password=NEW_PASSWORD,
            ip=None,
            now=datetime.now(UTC),
        )
        assert done.mfa_required
    finally:
        await redis.aclose()


async def test_teacher_enrols_without_totp(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, api_settings: Settings
) -> None:
    await provisioning.ensure_tenant(
        db_pool, tenant_id="school", name="S", allow_self_registration=True
    )
    outcome = await provisioning.ensure_user(
        db_pool,
        api_settings,
        tenant_id="school",
        email_address="t@example.org",
        roles=frozenset({Role.TEACHER}),
        display_name="",
        new_link=False,
        now=datetime.now(UTC),
    )
    assert outcome.link is not None
    token = re.search(r"token=(lst_[A-Za-z0-9_-]+)", outcome.link.url)
    assert token
    enrolled = await api_client.post(
        "/v1/auth/enrol", json={"token": token[1], "password": NEW_PASSWORD}
    )
    assert enrolled.json()["mfa_required"] is False
    login = await api_client.post(
        "/v1/auth/login",
        json={"tenant_id": "school", "email": "t@example.org", "password": NEW_PASSWORD},
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await api_client.get("/v1/classes", headers=headers)).status_code == 200


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed: run `make setup-browser`"
)
async def test_page_walks_the_first_admin_through_enrolment_and_totp(
    db_pool: asyncpg.Pool, api_settings: Settings
) -> None:
    """In Debian chromium: the printed link, a password, the QR code, a code, sign-in."""
    _, token = await make_admin(db_pool, api_settings)
    problems: list[str] = []
    with ServerThread(api_settings) as server:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page()
                page.on("console", lambda message: problems.extend(csp_violations(message.text)))
                await page.goto(f"{server.url}/dashboard#action=enrol&token={token}")
                assert "token" not in page.url
                await page.fill("#enrol-form input[name=first_password]", NEW_PASSWORD)
                await page.click("#enrol-form button[type=submit]")
                await page.wait_for_function("() => window.learnstream.state.mfaSetup")
                secret = await page.evaluate("window.learnstream.state.mfaSetup.secret")
                assert await page.text_content("#mfa-secret") == secret
                assert await page.locator("#mfa-qr svg path").count() == 1
                box = await page.locator("#mfa-qr svg").bounding_box()
                assert box is not None
                assert box["width"] > 100  # drawn, not an empty element
                now = datetime.now(UTC)
                await page.fill("#mfa-setup-form input[name=totp_code]", mfa.code_at(secret, now))
                await page.click("#mfa-setup-form button[type=submit]")
                await page.wait_for_function("() => window.learnstream.state.mfaSetup.confirmed")
                assert await page.locator("#backup-codes li").count() == mfa.BACKUP_CODE_COUNT

                await page.click("#mfa-continue")
                assert await page.input_value("#login-form input[name=email]") == (
                    "head@example.org"
                )
                await page.fill("#login-form input[name=password]", NEW_PASSWORD)
                await page.click("#login-form button[type=submit]")
                await page.wait_for_selector("#mfa-field:not([hidden])")
                code = mfa.code_at(secret, now + timedelta(seconds=30))
                await page.fill("#login-form input[name=code]", code)
                await page.click("#login-form button[type=submit]")
                await page.wait_for_function(
                    "() => window.learnstream.state.me && window.learnstream.state.polls > 0"
                )
                me = await page.evaluate("window.learnstream.state.me")
                assert (me["roles"], me["mfa_enabled"]) == (["admin"], True)
                assert await page.is_visible("#teacher-view")  # the admin's view, not a 403
                assert "update failed" not in (await page.text_content("#updated") or "")
            finally:
                await browser.close()
    assert problems == []
