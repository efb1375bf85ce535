"""ObserveRequests: one observation per HTTP request, by route template and status sent;
the hardening middleware: body limits, security headers, 204 without Content-Type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
from fastapi import FastAPI, HTTPException
from starlette.types import Message

from learnstream.asgi import (
    BodyLimits,
    LimitRequestBody,
    ObserveRequests,
    ResponseHeaders,
    api_security_headers,
    uvicorn_proxy_options,
)

AsyncIteratorOfBytes = AsyncIterator[bytes]


def app_observed_into(observed: list[tuple[str, str, int, float]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/learners/{user_id}/mastery")
    async def mastery(user_id: str) -> dict[str, str]:
        if user_id == "missing":
            raise HTTPException(status_code=404)
        if user_id == "broken":
            raise RuntimeError("boom")
        return {"user_id": user_id}

    app.add_middleware(ObserveRequests, observe=lambda *observation: observed.append(observation))
    return app


async def test_requests_are_observed_by_route_template_method_and_status() -> None:
    observed: list[tuple[str, str, int, float]] = []
    transport = httpx.ASGITransport(app=app_observed_into(observed), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/learners/stu-1/mastery")).status_code == 200
        assert (await client.get("/v1/learners/missing/mastery")).status_code == 404
        assert (await client.post("/v1/learners/stu-1/mastery")).status_code == 405
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/v1/learners/broken/mastery")).status_code == 500
    assert [(route, method, status) for route, method, status, _ in observed] == [
        ("/v1/learners/{user_id}/mastery", "GET", 200),
        ("/v1/learners/{user_id}/mastery", "GET", 404),
        ("/v1/learners/{user_id}/mastery", "POST", 405),
        ("unmatched", "GET", 404),
        # The app raised before answering: counted as the 500 the server then sends.
        ("/v1/learners/{user_id}/mastery", "GET", 500),
    ]
    assert all(seconds >= 0 for *_, seconds in observed)


async def test_lifespan_and_other_scopes_pass_through_unobserved() -> None:
    observed: list[tuple[str, str, int, float]] = []
    app = app_observed_into(observed)
    messages: Iterator[Message] = iter(
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    sent: list[str] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert observed == []


# --- hardening middleware (issue 12) -----------------------------------------------


def test_body_limits_take_the_longest_matching_prefix() -> None:
    limits = BodyLimits(1000, {"/v1/auth/": 10, "/v1/content/import": 5000})
    assert limits.for_path("/v1/auth/login") == 10
    assert limits.for_path("/v1/content/import") == 5000
    assert limits.for_path("/v1/content") == 1000


def test_proxy_headers_are_off_unless_proxies_are_trusted() -> None:
    assert uvicorn_proxy_options("") == {"proxy_headers": False, "forwarded_allow_ips": ""}
    assert uvicorn_proxy_options(" 10.0.0.5 , 10.1.0.0/16") == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.5", "10.1.0.0/16"],
    }


async def test_a_body_over_the_limit_is_cut_off_and_headers_are_added() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    @app.delete("/thing", status_code=204)
    async def delete() -> None:
        return None

    app.add_middleware(LimitRequestBody, limits=BodyLimits(64))
    app.add_middleware(ResponseHeaders, headers_for=api_security_headers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        small = await client.post("/echo", json={"a": "b"})
        assert small.status_code == 200
        assert small.headers["x-content-type-options"] == "nosniff"

        async def endless() -> AsyncIteratorOfBytes:
            for _ in range(1000):
                yield b'{"a": "' + b"x" * 30

        big = await client.post(
            "/echo", content=endless(), headers={"content-type": "application/json"}
        )
        assert big.status_code == 413
        assert big.headers["content-type"] == "application/problem+json"
        assert big.headers["connection"] == "close"
        assert big.headers["referrer-policy"] == "no-referrer"
        declared = await client.post("/echo", content=b"x" * 100)
        assert declared.status_code == 413
        assert "Content-Length is 100" in declared.json()["detail"]
        gone = await client.delete("/thing")
        assert gone.status_code == 204
        assert "content-type" not in gone.headers
        docs = await client.get("/docs")
        assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
