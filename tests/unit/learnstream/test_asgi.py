"""ObserveRequests: one observation per HTTP request, by route template and status sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from fastapi import FastAPI, HTTPException
from starlette.types import Message

from learnstream.asgi import ObserveRequests


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
