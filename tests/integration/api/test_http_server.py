"""The read API as its deployed process (``python -m api``: uvicorn on loopback), for the
findings that live in the socket layer: a streamed oversized body is refused after
about its limit (M6), a crafted request leaves the keep-alive connection usable (L1),
``X-Forwarded-For`` is ignored unless the peer is a trusted proxy (L9), and /metrics
answers on the metrics port only (Info, checked with the keep-alive test's process).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import select
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.services.principals import Role
from infra import demo, services
from learnstream.settings import Settings
from tests.integration.api.conftest import sign_in


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """``python -m api`` on free ports; its base URL and PID."""
    name = f"api-{settings.api_port}"
    pid = demo.start_process(settings, name, ["api"])
    try:
        await demo.wait_ready(
            f"http://127.0.0.1:{settings.api_port}/readyz",
            timeout_s=60,
            log_path=settings.run_dir / f"{name}.log",
        )
        yield f"http://127.0.0.1:{settings.api_port}", pid
    finally:
        await asyncio.to_thread(services.stop_pid, pid)


@pytest.fixture
def server_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={
            "api_port": services.free_port(),
            "api_metrics_port": services.free_port(),
            "log_level": "WARNING",
        }
    )


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _complete(answer: bytes) -> bool:
    """True once ``answer`` holds a whole HTTP head and the Content-Length body after it."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def _stream_until_answered(port: int, path: str, *, give_up_after: int) -> tuple[int, bytes]:
    """POST a chunked body of 64 KiB chunks until the server answers (or until
    ``give_up_after`` bytes went out); the bytes sent and the raw answer."""
    chunk = b"[" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        while sent < give_up_after:
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed while we were sending
            sent += len(chunk)
        answer = b""
        deadline = time.monotonic() + 10
        # The head and the body can arrive in separate segments: read both.
        while time.monotonic() < deadline and not _complete(answer):
            try:
                piece = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not piece:
                break
            answer += piece
    return sent, answer


async def test_streamed_oversized_login_body_is_refused_before_parsing(
    server_settings: Settings, db_pool: asyncpg.Pool
) -> None:
    limit = server_settings.api_max_auth_body_bytes
    async with running_api(server_settings) as (_, pid):
        before = _rss_bytes(pid)
        sent, answer = await asyncio.to_thread(
            _stream_until_answered,
            server_settings.api_port,
            "/v1/auth/login",
            give_up_after=64 * 1024 * 1024,
        )
        after = _rss_bytes(pid)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"application/problem+json" in head
    assert json.loads(body)["errors"][0]["field"] == "body"
    # Refused after about the limit: what the kernel's buffers took, not the 64 MiB.
    assert sent < 8 * 1024 * 1024, sent
    assert sent >= limit
    assert after - before < 32 * 1024 * 1024, (before, after)


async def test_crafted_cursor_keeps_the_connection_usable(
    server_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    async with running_api(server_settings) as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            admin = await sign_in(
                client, db_pool, server_settings, tenant_id="acme", roles={Role.ADMIN}
            )
        cursor = base64.urlsafe_b64encode(("9" * 25).encode()).decode().rstrip("=")

        def on_one_connection() -> list[int]:
            connection = http.client.HTTPConnection("127.0.0.1", server_settings.api_port)
            statuses = []
            for path in (f"/v1/audit?cursor={cursor}", "/v1/users?cursor=", "/healthz"):
                connection.request("GET", path, headers=admin.headers)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            connection.close()
            return statuses

        assert await asyncio.to_thread(on_one_connection) == [422, 422, 200]

        # test_metrics_not_on_public_port, against the process: only the metrics port has it.
        async with httpx.AsyncClient(timeout=10) as client:
            public = await client.get(f"{base}/metrics")
            private = await client.get(
                f"http://127.0.0.1:{server_settings.api_metrics_port}/metrics"
            )
    assert public.status_code == 404
    assert public.headers["content-type"] == "application/problem+json"
    assert private.status_code == 200
    assert "learnstream_api_http_requests_total" in private.text


def _login_statuses(base: str, addresses: Callable[[int], str], count: int) -> list[int]:
    statuses = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in range(count):
            response = client.post(
                "/v1/auth/login",
                json={"tenant_id": "acme", "email": "x@example.org", "password": "y"},
                headers={"X-Forwarded-For": addresses(n)},
            )
            statuses.append(response.status_code)
    return statuses


async def test_forwarded_for_is_ignored_by_default(
    server_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    settings = server_settings.model_copy(update={"api_auth_rate_limit_per_minute": 3})
    assert settings.trusted_proxies == ""
    async with running_api(settings) as (base, _):
        statuses = await asyncio.to_thread(
            _login_statuses, base, lambda n: f"198.51.100.{n + 1}", 12
        )
    # Every request counted against 127.0.0.1, whatever address it claimed.
    assert 429 in statuses, statuses


async def test_forwarded_for_is_believed_from_a_trusted_proxy(
    server_settings: Settings, db_pool: asyncpg.Pool, tenants: tuple[str, str]
) -> None:
    settings = server_settings.model_copy(
        update={"api_auth_rate_limit_per_minute": 3, "trusted_proxies": "127.0.0.1/32"}
    )
    async with running_api(settings) as (base, _):
        statuses = await asyncio.to_thread(
            _login_statuses, base, lambda n: f"198.51.100.{n + 1}", 12
        )
        # One client behind the proxy is still limited.
        same = await asyncio.to_thread(_login_statuses, base, lambda _n: "198.51.100.200", 12)
    assert 429 not in statuses, statuses
    assert 429 in same, same
