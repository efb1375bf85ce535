"""One problem+json scheme: the slug table in docs/architecture.md, the exception classes
of both services and the handlers agree, and ingest and the read API name the same
problem with the same slug."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from fastapi import FastAPI, Query

import api.exceptions
import api.services.rate_limits
import ingest.exceptions
from api.app import create_app as create_api
from ingest.app import create_app as create_ingest
from learnstream.problems import PROBLEM_TYPES, ProblemError, install_problem_handlers
from learnstream.settings import Settings

ARCHITECTURE = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"
ROW = re.compile(r"^\| `([a-z-]+)` \| (\d+|any) \| ([^|]+) \|", re.MULTILINE)


def _subclasses(cls: type[ProblemError]) -> list[type[ProblemError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def test_the_documented_table_is_the_slug_set() -> None:
    documented = {
        slug: (int(status) if status != "any" else 0, title.strip())
        for slug, status, title in ROW.findall(ARCHITECTURE.read_text())
    }
    assert documented == {p.slug: (p.status, p.title) for p in PROBLEM_TYPES.values()}


def test_every_service_error_uses_a_slug_of_the_set() -> None:
    modules = {api.exceptions, api.services.rate_limits, ingest.exceptions}
    classes = [
        c for c in _subclasses(ProblemError) if c.__module__ in {m.__name__ for m in modules}
    ]
    assert len(classes) >= 15
    for cls in classes:
        problem = PROBLEM_TYPES[cls.slug]
        assert (cls.status, cls.title) == (problem.status, problem.title), cls


async def _get(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_both_services_name_unknown_routes_and_methods_alike() -> None:
    settings = Settings()
    for app in (create_api(settings), create_ingest(settings)):
        missing = await _get(app, "GET", "/v1/nothing-here")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"] == "urn:learnstream:problem:not-found"
        wrong_method = await _get(app, "DELETE", "/healthz")
        assert wrong_method.json()["type"] == "urn:learnstream:problem:method-not-allowed"


async def test_validation_malformed_body_and_unexpected_errors() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(body: dict[str, int], n: int = Query(ge=0)) -> dict[str, int]:
        return body

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    invalid = await _get(app, "POST", "/echo?n=-1", json={"a": 1})
    assert invalid.json()["type"] == "urn:learnstream:problem:validation"
    assert invalid.json()["errors"][0]["field"] == "query.n"
    broken = await _get(
        app, "POST", "/echo?n=1", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code in (400, 422)
    assert broken.json()["type"] in (
        "urn:learnstream:problem:malformed-body",
        "urn:learnstream:problem:validation",
    )
    failed = await _get(app, "GET", "/boom")
    assert failed.status_code == 500
    assert failed.json()["type"] == "urn:learnstream:problem:internal"
