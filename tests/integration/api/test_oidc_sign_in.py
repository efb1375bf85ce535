"""Single sign-on in headless Chromium against a real, certified OpenID provider.

The provider is panva's ``oidc-provider`` (npm, OpenID Certified), started on loopback
by tests/oidc/provider.mjs with a confidential client for Learnstream. An admin
registers it for tenant acme over HTTP; a learner then opens the dashboard, clicks the
provider's button, signs in on the provider's own login and consent pages and lands on
the dashboard signed in (the identity linked by verified e-mail). Refusals: a person
with no account, a replayed callback, a tenant that does not link by e-mail.

Needs Debian's chromium (``make setup-browser``) and node_modules/oidc-provider.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from api.app import create_app
from api.services.principals import Role
from infra import services
from learnstream.settings import Settings
from tests.integration.api.conftest import make_user, sign_in
from tests.integration.api.test_dashboard_page import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[3]
PROVIDER_SCRIPT = REPO / "tests" / "oidc" / "provider.mjs"
CLIENT_ID, CLIENT_SECRET = "learnstream", "secret-of-the-test-client"
ACCOUNTS = {
    "ada": {"email": "ada@example.org", "email_verified": True, "name": "Ada"},
    "eve": {"email": "eve@example.org", "email_verified": True, "name": "Eve"},
}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium: run `make setup-browser`"),
    pytest.mark.skipif(
        not (REPO / "node_modules" / "oidc-provider").exists(), reason="npm install first"
    ),
]


class Server:
    """uvicorn serving the read API on ``port`` from a thread of its own."""

    def __init__(self, settings: Settings, port: int) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-sso", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.05)
        raise AssertionError("uvicorn did not start within 10 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api_url(api_settings: Settings, db_pool: asyncpg.Pool) -> Iterator[str]:
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    with Server(api_settings.model_copy(update={"public_base_url": url}), port):
        yield url


@pytest.fixture
def issuer(api_url: str, tmp_path: Path) -> Iterator[str]:
    """oidc-provider on a free loopback port, its client redirecting to ``api_url``."""
    config = {
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{api_url}/v1/auth/oidc/callback"],
                "token_endpoint_auth_method": "client_secret_basic",
            }
        ],
        "accounts": ACCOUNTS,
    }
    path = tmp_path / "provider.json"
    path.write_text(json.dumps(config))
    port = services.free_port()
    log = (tmp_path / "provider.log").open("w")
    process = subprocess.Popen(
        ["node", str(PROVIDER_SCRIPT), str(port), str(path)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), (line, (tmp_path / "provider.log").read_text())
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def register_provider(
    api_url: str, db_pool: asyncpg.Pool, settings: Settings, issuer: str, *, link: bool
) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        admin = await sign_in(
            client,
            db_pool,
            settings,
            tenant_id="acme",
            roles={Role.ADMIN},
            email_address="admin@example.org",
        )
        added = await client.post(
            "/v1/tenants/me/identity-providers",
            headers=admin.headers,
            json={
                "provider_id": "school-idp",
                "display_name": "School ID",
                "issuer": issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "link_by_email": link,
            },
        )
    assert added.status_code == 201, added.text
    body: dict[str, object] = added.json()
    assert "client_secret" not in body
    return body


async def sign_in_at_provider(page: Page, api_url: str, login: str) -> None:
    """From the dashboard, through the provider's own login and consent pages, back."""
    await page.goto(f"{api_url}/dashboard?tenant=acme&view=learner")
    await page.click("text=Sign in with School ID")
    await page.wait_for_selector("input[name=login]")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password: the provider's dev login")
    await page.click("button[type=submit]")
    await page.wait_for_selector("button:has-text('Continue')")
    await page.click("button:has-text('Continue')")
    await page.wait_for_url(f"{api_url}/dashboard*")


async def test_learner_signs_in_through_the_provider_and_lands_on_the_dashboard(
    api_url: str,
    issuer: str,
    browser: Browser,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    registered = await register_provider(api_url, db_pool, api_settings, issuer, link=True)
    assert registered["redirect_uri"] == f"{api_url}/v1/auth/oidc/callback"
    ada = await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="ada@example.org",
    )
    page = await browser.new_page()
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/oidc/callback" in r.url else None)
    await sign_in_at_provider(page, api_url, "ada")
    await page.wait_for_function(
        "() => window.learnstream.state.me !== null"
        " || document.querySelector('#login-error').textContent !== ''"
    )
    assert await page.text_content("#login-error") == ""
    await page.wait_for_selector("#learner-view:not([hidden])")
    me = await page.evaluate("() => window.learnstream.state.me")
    assert (me["id"], me["email"]) == (ada.id, "ada@example.org")
    assert "code=" not in page.url  # the one-time code left the address bar
    linked = await db_pool.fetchrow("SELECT user_id::text, provider, subject FROM user_identities")
    assert dict(linked) == {"user_id": ada.id, "provider": issuer, "subject": "ada"}

    # The provider's answer is single use: replaying the callback signs nobody in.
    (callback,) = callbacks
    async with httpx.AsyncClient(timeout=30) as client:
        replayed = await client.get(callback)
    assert replayed.status_code == 302
    assert replayed.headers["location"].startswith("/dashboard#action=oidc-error")

    # Eve is known to the provider but has no account in acme: refused, not created.
    other = await browser.new_page()
    await sign_in_at_provider(other, api_url, "eve")
    await other.wait_for_function("() => document.querySelector('#login-error').textContent !== ''")
    assert "no account" in ((await other.text_content("#login-error")) or "")
    assert await db_pool.fetchval("SELECT count(*) FROM users WHERE email = 'eve@example.org'") == 0


async def test_a_tenant_that_does_not_link_by_email_refuses_a_new_identity(
    api_url: str,
    issuer: str,
    browser: Browser,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    await register_provider(api_url, db_pool, api_settings, issuer, link=False)
    await make_user(
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address="ada@example.org",
    )
    page = await browser.new_page()
    await sign_in_at_provider(page, api_url, "ada")
    await page.wait_for_function("() => document.querySelector('#login-error').textContent !== ''")
    assert "no account is linked" in ((await page.text_content("#login-error")) or "")
    assert await db_pool.fetchval("SELECT count(*) FROM user_identities") == 0
