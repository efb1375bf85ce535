"""Mailed links and the access log, against a real uvicorn server (review finding L5).

Proves: the access log (uvicorn's, through our logging set-up) never holds a token
that arrived in a URL, whatever the route answered; and the dashboard page takes
the token of a mailed link from the URL fragment, which no server ever receives,
POSTs it, and drops it from the address bar (checked in Debian chromium).
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from learnstream.logging import RedactSecrets, configure_logging
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, Mailbox
from tests.integration.api.test_dashboard_page import CHROMIUM, CHROMIUM_ARGS, ServerThread

SECRETS = ("lst_LiveResetToken0123456789", "lsr_LiveRefresh0123456789", "hunter2-password")


@pytest.fixture
def api_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The API's own logging set-up (``python -m api``) for one test, writing to a buffer."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # configure_logging logs to sys.stderr
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("INFO", json_lines=True)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, RedactSecrets)]:
            logger.removeFilter(f)


async def test_access_log_redacts_tokens(
    api_settings: Settings, db_pool: asyncpg.Pool, api_log: io.StringIO
) -> None:
    with ServerThread(api_settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            # An old-style mailed link: a page the API answers 404.
            assert (await client.get(f"/reset-password?token={SECRETS[0]}")).status_code == 404
            page = await client.get(f"/dashboard?view=learner&refresh_token={SECRETS[1]}")
            assert page.status_code == 200
            await client.post(f"/v1/auth/verify-email?password={SECRETS[2]}", json={"token": "x"})
    logged = api_log.getvalue()
    access = [
        json.loads(line) for line in logged.splitlines() if '"logger": "uvicorn.access"' in line
    ]
    assert len(access) >= 3, logged  # the access log did run
    for secret in SECRETS:
        assert secret not in logged
    messages = " ".join(entry["msg"] for entry in access)
    assert "/reset-password?token=[redacted]" in messages
    assert "/dashboard?view=learner&refresh_token=[redacted]" in messages


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


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed: run `make setup-browser`"
)
async def test_dashboard_page_spends_mailed_tokens_from_the_fragment(
    api_settings: Settings,
    db_pool: asyncpg.Pool,
    mailbox: Mailbox,
    tenants: tuple[str, str],
    browser: Browser,
) -> None:
    address = "linked@example.org"
    with ServerThread(api_settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            registered = await client.post(
                "/v1/auth/register",
                json={"tenant_id": "acme", "email": address, "password": PASSWORD},
            )
            assert registered.status_code == 202
        requested: list[str] = []

        async def follow(mail_subject: str) -> dict[str, object]:
            link = re.findall(r"https?://\S+", mailbox.last(address, mail_subject).body)[0]
            fragment = link.split("#", 1)[1]
            page = await browser.new_page()  # a link from a mail opens a new tab
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{server.url}/dashboard#{fragment}")
            await page.wait_for_function(
                "() => window.learnstream.state.mailedLink"
                " && (window.learnstream.state.mailedLink.done"
                " || window.learnstream.state.mailedLink.error)"
            )
            assert "#" not in page.url  # the token is gone from the address bar
            assert "token" not in page.url
            state: dict[str, object] = await page.evaluate("window.learnstream.state.mailedLink")
            await page.close()
            return state

        assert (await follow("confirm"))["done"] is True
        verified = await db_pool.fetchval(
            "SELECT email_verified_at IS NOT NULL FROM users WHERE email = $1", address
        )
        assert verified

        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.post(
                "/v1/auth/password-reset/request", json={"tenant_id": "acme", "email": address}
            )
        link = re.findall(r"https?://\S+", mailbox.last(address, "reset").body)[0]
        page = await browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(f"{server.url}/dashboard#{link.split('#', 1)[1]}")
        assert "token" not in page.url
        await page.fill("#reset-form input[name=new_password]", "Brand-new-pass-55")
        await page.click("#reset-form button[type=submit]")
        await page.wait_for_function("() => window.learnstream.state.mailedLink.done")
        async with httpx.AsyncClient(base_url=server.url) as client:
            login = await client.post(
                "/v1/auth/login",
                json={"tenant_id": "acme", "email": address, "password": "Brand-new-pass-55"},
            )
            assert login.status_code == 200
        await page.close()
    # No request the browser made carried a token in its URL.
    assert requested
    assert not [url for url in requested if "lst_" in url]
