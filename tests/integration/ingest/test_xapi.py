"""xAPI statements in, with Ralph (the LRS of Open edX, ``ralph-malph``) as the foreign client.

Ingest serves on a loopback socket (uvicorn, the real producer, Redis and PostgreSQL);
Ralph's async LRS data backend writes statements to it exactly as it writes to any
LRS (Basic auth, ``X-Experience-API-Version``, JSON batches). The statements are
Ralph's own: its converter turns Open edX tracking-log events into xAPI, and answers
are built with its xAPI models (Ralph 5.1 converts no ``problem_check`` event).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from ralph.backends.data.async_lrs import AsyncLRSDataBackend
from ralph.backends.data.lrs import LRSDataBackendSettings
from ralph.exceptions import BackendException
from ralph.models.converter import Converter
from ralph.models.selector import ModelSelector
from ralph.models.xapi.base.statements import BaseXapiStatement

from infra.services import free_port
from ingest.app import create_app
from learnstream.apikeys import IssuedApiKey, Scope, create_api_key
from learnstream.events.v1 import attempt_pb2
from learnstream.kafka import EVENT_TYPE_HEADER, Stream
from learnstream.settings import Settings
from tests.integration.ingest import support
from tests.integration.ingest.support import TENANT, read_topics
from tests.integration.processors.support import running_worker, wait_for, worker_env

LMS = "https://courses.example.org"
QUESTION = f"{LMS}/xblock/block-v1:Org+Math+2026+type@problem+block@q1"
OTHER_QUESTION = f"{LMS}/xblock/block-v1:Org+Math+2026+type@problem+block@q2"
ANSWERED = "http://adlnet.gov/expapi/verbs/answered"
VERSION = {"X-Experience-API-Version": "1.0.3"}


@pytest.fixture
async def lrs(topics: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Ingest on a loopback port with a tenant whose activity q1 is mapped; its base URL."""
    await db_pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", TENANT)
    await db_pool.execute(
        "INSERT INTO xapi_activities (tenant_id, activity_id, item_id, item_version, skill_ids) "
        "VALUES ($1, $2, 'item-q1', 3, $3)",
        TENANT,
        QUESTION,
        ["fractions.add", "fractions.compare"],
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(topics), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "ingest did not start"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    await serving


@pytest.fixture
async def key(db_pool: asyncpg.Pool) -> IssuedApiKey:
    return await create_api_key(db_pool, tenant_id=TENANT, app_name="open-edx")


def ralph(base_url: str, key: IssuedApiKey) -> AsyncLRSDataBackend:
    """Ralph's LRS client, configured as an Open edX admin would (the key as password)."""
    return AsyncLRSDataBackend(
        LRSDataBackendSettings(BASE_URL=base_url, USERNAME="open-edx", PASSWORD=key.plaintext)
    )


def answer(learner: str, *, success: bool, scaled: float, at: datetime) -> dict[str, Any]:
    """An ``answered`` statement built and validated with Ralph's xAPI models."""
    statement = BaseXapiStatement.model_validate(
        {
            "id": str(uuid.uuid4()),
            "actor": {"objectType": "Agent", "account": {"homePage": LMS, "name": learner}},
            "verb": {"id": ANSWERED, "display": {"en-US": "answered"}},
            "object": {"objectType": "Activity", "id": QUESTION},
            "result": {
                "success": success,
                "score": {"scaled": scaled},
                "response": "3/4",
                "duration": "PT42.5S",
            },
            "timestamp": at.isoformat(),
        }
    )
    dumped: dict[str, Any] = json.loads(statement.model_dump_json(exclude_none=True))
    return dumped


def converted_edx_events(user_id: int) -> list[dict[str, Any]]:
    """Open edX tracking-log events (a page view, a video play) through Ralph's converter."""
    course = "course-v1:Org+Math+2026"
    base = {
        "username": f"user{user_id}",
        "ip": "127.0.0.1",
        "agent": "Mozilla/5.0",
        "host": "courses.example.org",
        "referer": f"{LMS}/courses/{course}/courseware",
        "accept_language": "en",
        "context": {
            "course_id": course,
            "course_user_tags": {},
            "user_id": user_id,
            "org_id": "Org",
            "path": f"/courses/{course}/courseware",
        },
        "time": "2026-01-10T10:00:00.000000+00:00",
        "page": None,
    }
    page_view = {
        **base,
        "event_source": "server",
        "event_type": f"/courses/{course}/courseware",
        "event": json.dumps({"GET": {}, "POST": {}}),
    }
    converter = Converter(
        model_selector=ModelSelector(module="ralph.models.edx"),
        platform_url=LMS,
        uuid_namespace="ee241f8b-174f-5bdb-bae9-c09de5fe017f",
    )
    lines = [json.dumps(page_view)]
    return [
        json.loads(s) for s in converter.convert(lines, ignore_errors=False, fail_on_unknown=True)
    ]


def basic(key: IssuedApiKey) -> dict[str, str]:
    token = base64.b64encode(f"any:{key.plaintext}".encode()).decode()
    return {"Authorization": f"Basic {token}", **VERSION}


async def test_ralph_writes_answers_that_become_attempts_once(
    lrs: str, key: IssuedApiKey, topics: Settings, db_pool: asyncpg.Pool
) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    answers = [
        answer("stu-7", success=False, scaled=0.25, at=t0),
        answer("stu-7", success=True, scaled=1.0, at=t0 + timedelta(seconds=50)),
    ]
    viewed = converted_edx_events(7)
    backend = ralph(lrs, key)
    written = await backend.write([*answers, *viewed])
    # Ralph resends the whole batch (a client whose answer was lost): a no-op.
    rewritten = await backend.write(answers)
    await backend.close()
    assert (written, rewritten) == (3, 2)

    records = read_topics(topics, [Stream.ATTEMPTS], expected=2)
    events = [attempt_pb2.AttemptEvent.FromString(r.value) for r in records]
    assert sorted(e.envelope.event_id for e in events) == sorted(a["id"] for a in answers)
    first = next(e for e in events if e.envelope.event_id == answers[0]["id"])
    assert (first.envelope.tenant_id, first.envelope.user_id) == (TENANT, "stu-7")
    assert (first.item_id, first.item_version) == ("item-q1", 3)
    assert list(first.skill_ids) == ["fractions.add", "fractions.compare"]
    assert (first.correct, first.score, first.response) == (False, 0.25, "3/4")
    assert first.response_time_ms == 42_500
    assert first.envelope.occurred_at.ToDatetime(tzinfo=UTC) == t0.replace(microsecond=0) + (
        timedelta(microseconds=t0.microsecond)
    )
    assert records[0].headers[EVENT_TYPE_HEADER] == b"learnstream.events.v1.AttemptEvent"

    stored = await db_pool.fetch(
        "SELECT statement_id::text, user_id, verb_id, attempt FROM xapi_statements "
        "WHERE tenant_id = $1 ORDER BY attempt, verb_id",
        TENANT,
    )
    assert [(r["user_id"], r["attempt"]) for r in stored] == [
        ("7", False),
        ("stu-7", True),
        ("stu-7", True),
    ]
    assert stored[0]["verb_id"] == "http://id.tincanapi.com/verb/viewed"
    assert stored[0]["statement_id"] == viewed[0]["id"]


async def test_lrs_rules_refuse_the_whole_batch(
    lrs: str, key: IssuedApiKey, topics: Settings, db_pool: asyncpg.Pool
) -> None:
    url = f"{lrs}/xAPI/statements"
    good = answer("stu-8", success=True, scaled=1.0, at=datetime.now(UTC))
    async with httpx.AsyncClient(timeout=30) as client:
        no_version = await client.post(
            url, json=[good], headers=basic(key) | {"X-Experience-API-Version": ""}
        )
        invalid = await client.post(
            url, json=[good, {**good, "id": str(uuid.uuid4()), "verb": {}}], headers=basic(key)
        )
        repeated = await client.post(url, json=[good, good], headers=basic(key))
        no_key = await client.post(url, json=[good], headers=VERSION)
        reader = await create_api_key(
            db_pool, tenant_id=TENANT, app_name="reader", scopes=frozenset({Scope.VIEWS_READ})
        )
        wrong_scope = await client.post(url, json=[good], headers=basic(reader))
        put = await client.put(
            url, params={"statementId": good["id"]}, json=good, headers=basic(key)
        )
        conflict = await client.post(
            url, json=[{**good, "result": {"success": False}}], headers=basic(key)
        )
        about = await client.get(f"{lrs}/xAPI/about")
        bearer = await client.post(
            url,
            json=answer("stu-8", success=False, scaled=0.0, at=datetime.now(UTC)),
            headers={"Authorization": f"Bearer {key.plaintext}", **VERSION},
        )
    assert no_version.status_code == 400
    assert invalid.status_code == 400
    assert invalid.json()["errors"][0]["field"].startswith("statements[1].verb")
    assert repeated.status_code == 400
    assert repeated.json()["errors"] == [
        {"field": "statements[1].id", "reason": "same id as statements[0]"}
    ]
    assert (no_key.status_code, wrong_scope.status_code) == (401, 403)
    assert put.status_code == 204
    assert put.headers["X-Experience-API-Version"] == "1.0.3"
    assert conflict.status_code == 409
    assert about.json() == {"version": ["1.0.3"]}
    assert bearer.status_code == 200
    assert len(bearer.json()) == 1
    # Only the PUT statement and the Bearer one went through; refused batches left nothing.
    assert await db_pool.fetchval("SELECT count(*) FROM xapi_statements") == 2
    records = read_topics(topics, [Stream.ATTEMPTS], expected=2)
    assert sorted(
        attempt_pb2.AttemptEvent.FromString(r.value).envelope.event_id for r in records
    ) == sorted([good["id"], bearer.json()[0]])


async def test_a_tenant_that_refuses_unmapped_statements_gets_400_from_ralph(
    lrs: str, key: IssuedApiKey, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "INSERT INTO xapi_settings (tenant_id, unmapped) VALUES ($1, 'refuse')", TENANT
    )
    unmapped = answer("stu-9", success=True, scaled=1.0, at=datetime.now(UTC))
    unmapped["object"]["id"] = OTHER_QUESTION
    backend = ralph(lrs, key)
    with pytest.raises(BackendException):
        await backend.write(
            [answer("stu-9", success=True, scaled=1.0, at=datetime.now(UTC)), unmapped]
        )
    await backend.close()
    async with httpx.AsyncClient(timeout=30) as client:
        refused = await client.post(f"{lrs}/xAPI/statements", json=[unmapped], headers=basic(key))
    assert refused.status_code == 400
    (error,) = refused.json()["errors"]
    assert error["field"] == "statements[0]"
    assert "mapped to no item" in error["reason"]
    assert await db_pool.fetchval("SELECT count(*) FROM xapi_statements") == 0


async def test_mastery_moves_as_if_the_answers_came_through_v1_events(
    lrs: str, key: IssuedApiKey, topics: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """stu-x answers through Ralph, stu-e the same answers through /v1/events: the mastery
    processor leaves both with the same skill_mastery."""
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    outcomes = [(False, 0.0), (True, 1.0), (True, 1.0), (False, 0.5), (True, 1.0)]
    statements = [
        answer("stu-x", success=ok, scaled=s, at=t0 + timedelta(seconds=30 * i))
        for i, (ok, s) in enumerate(outcomes)
    ]
    events = []
    for i, (ok, s) in enumerate(outcomes):
        event = support.attempt(
            "stu-e", item_id="item-q1", item_version=3, correct=ok, score=s, response_time_ms=42_500
        )
        del event.attempt.skill_ids[:]
        event.attempt.skill_ids.extend(["fractions.add", "fractions.compare"])
        event.attempt.envelope.occurred_at.FromDatetime(t0 + timedelta(seconds=30 * i))
        events.append(event)
    backend = ralph(lrs, key)
    assert await backend.write(statements) == len(statements)
    await backend.close()
    async with httpx.AsyncClient(timeout=30) as client:
        posted = await client.post(
            f"{lrs}/v1/events",
            content=support.protobuf_body(events),
            headers={**support.auth(key), "Content-Type": "application/x-protobuf"},
        )
    assert support.parse_response(posted).accepted == len(events)

    async def both_applied() -> bool:
        counts = await db_pool.fetch(
            "SELECT attempts FROM skill_mastery WHERE tenant_id = $1", TENANT
        )
        return len(counts) == 4 and all(r["attempts"] == len(outcomes) for r in counts)

    worker_settings = topics.model_copy(update={"processor_web_port": free_port()})
    with running_worker(
        "learner_state", worker_env(worker_settings), tmp_path / "worker.log"
    ) as worker:
        await wait_for(both_applied, what="every attempt applied", timeout_s=90, worker=worker)
    rows = await db_pool.fetch(
        "SELECT user_id, skill_id, p_mastery, correct FROM skill_mastery WHERE tenant_id = $1",
        TENANT,
    )
    by_learner = {
        learner: {
            r["skill_id"]: (r["p_mastery"], r["correct"]) for r in rows if r["user_id"] == learner
        }
        for learner in ("stu-x", "stu-e")
    }
    assert by_learner["stu-x"] == by_learner["stu-e"]
    assert by_learner["stu-x"]["fractions.add"][1] == 3
