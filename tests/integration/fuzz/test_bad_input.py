"""Hostile and broken input, explicitly: each gets a clear 4xx (or, for one bad event in a
batch, a REJECTED result naming its field) and nothing reaches any topic.

Extends tests/integration/ingest/test_refusals.py (corrupt protobuf, invalid UTF-8,
truncated JSON, text/plain, empty and small-limit batches, 401s) with: protobuf bodies
truncated inside an event or whose length prefix runs past the end, more wrong content
types, the default limits (1,001 events; a body over 8 MB), JSON NaN and deeply nested
bodies; and, per event: negative counts, NaN and infinite numbers, huge strings,
far-future and out-of-range timestamps, lone surrogates. Ingest runs in-process on
the real broker, Redis and PostgreSQL; after all cases the input topics are read and
must be empty. Also the read API: a text value PostgreSQL cannot store (NUL) is a 422.

Per-event rules answer 200 with the event REJECTED (a batch's good events are not
refused for a bad neighbour; see ingest/validation.py), so a batch of one bad event
is refused by field path rather than by status code.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from api.app import create_app as create_api
from api.services import accounts
from api.services.principals import Role
from learnstream.apikeys import IssuedApiKey, create_api_key
from learnstream.events.v1 import ingest_pb2, placement_pb2
from learnstream.settings import Settings
from tests.integration.fuzz.support import answer_problem
from tests.integration.ingest.support import (
    TENANT,
    attempt,
    auth,
    envelope,
    new_event_id,
    parse_response,
    protobuf_body,
    read_topics,
    running_ingest,
)

PROTOBUF = "application/x-protobuf"
STATUS = ingest_pb2.EventStatus


def truncated_inside_first_event() -> list[bytes]:
    body = protobuf_body([attempt(), attempt()])
    first_event_end = 2 + body[1]  # tag, one-byte length, the event
    return [body[:cut] for cut in (1, 2, 7, first_event_end // 2, first_event_end - 1)]


# (body, content type, status, words the problem's detail must contain)
REFUSED_REQUESTS: list[tuple[str, bytes, str, int, str]] = [
    *[
        (f"protobuf cut at {len(b)} bytes", b, PROTOBUF, 400, "not a valid IngestRequest")
        for b in truncated_inside_first_event()
    ],
    ("length prefix past the end", b"\x0a\xff\xff\x03abc", PROTOBUF, 400, "not a valid"),
    ("nested groups", b"\x0b" * 50_000, PROTOBUF, 400, "not a valid"),
    ("wrong wire type only", b"\x08\x01", PROTOBUF, 400, "no events"),
    ("xml", b"<events/>", "application/xml", 415, "application/xml"),
    ("form", b"events=1", "application/x-www-form-urlencoded", 415, "not accepted"),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "not accepted"),
    ("json latin-1", b'{"events": []}', "application/json; charset=latin-1", 415, "UTF-8"),
    (
        "json NaN constant",
        b'{"events": [{"attempt": {"score": NaN}}]}',
        "application/json",
        400,
        "NaN",
    ),
    (
        "json nested 100k deep",
        b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
        400,
        "not valid JSON",
    ),
    ("json events an object", b'{"events": {}}', "application/json", 400, "JSON array"),
    (
        "1,001 events",
        protobuf_body([attempt() for _ in range(1001)]),
        PROTOBUF,
        413,
        "at most 1000",
    ),
    ("over 8 MB", b"\x0a" + b"\x00" * (8 * 1024 * 1024 + 1), PROTOBUF, 413, "Content-Length"),
]


def with_envelope(change: Callable[[ingest_pb2.LearningEvent], None]) -> ingest_pb2.LearningEvent:
    event = attempt()
    change(event)
    return event


def placement(**fields: object) -> ingest_pb2.LearningEvent:
    message = placement_pb2.PlacementEvent(
        envelope=envelope("learner-1"),
        placement_id="p-1",
        ability=0.2,
        ability_se=0.3,
        items_administered=10,
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return ingest_pb2.LearningEvent(placement=message)


def many_skills(count: int) -> ingest_pb2.LearningEvent:
    event = attempt()
    event.attempt.skill_ids.extend(["s"] * count)
    return event


def occurred(when: datetime) -> Callable[[ingest_pb2.LearningEvent], None]:
    return lambda e: e.attempt.envelope.occurred_at.FromDatetime(when)


def raw_seconds(seconds: int, nanos: int = 0) -> Callable[[ingest_pb2.LearningEvent], None]:
    def change(event: ingest_pb2.LearningEvent) -> None:
        event.attempt.envelope.occurred_at.seconds = seconds
        event.attempt.envelope.occurred_at.nanos = nanos

    return change


def set_user(user_id: str) -> Callable[[ingest_pb2.LearningEvent], None]:
    def change(event: ingest_pb2.LearningEvent) -> None:
        event.attempt.envelope.user_id = user_id

    return change


# (case, event, the field path the rejection must name, a word of its reason)
REJECTED_EVENTS: list[tuple[str, ingest_pb2.LearningEvent, str, str]] = [
    ("negative response time", attempt(response_time_ms=-5), "attempt.response_time_ms", ">= 0"),
    ("negative hints", attempt(hint_count=-1), "attempt.hint_count", ">= 0"),
    ("negative attempt number", attempt(attempt_number=-1), "attempt.attempt_number", ">= 0"),
    ("negative item version", attempt(item_version=-3), "attempt.item_version", ">= 0"),
    ("negative score", attempt(score=-0.1), "attempt.score", "[0, 1]"),
    ("NaN score", attempt(score=math.nan), "attempt.score", "NaN"),
    ("infinite score", attempt(score=math.inf), "attempt.score", "[0, 1]"),
    ("NaN ability", placement(ability=math.nan), "placement.ability", "finite"),
    ("infinite ability", placement(ability=-math.inf), "placement.ability", "finite"),
    ("zero ability SE", placement(ability_se=0.0), "placement.ability_se", "> 0"),
    ("negative items", placement(items_administered=-2), "placement.items_administered", ">= 0"),
    (
        "10k-char user id",
        with_envelope(set_user("u" * 10_000)),
        "attempt.envelope.user_id",
        "at most",
    ),
    (
        "control char in user id",
        with_envelope(set_user("a\x00b")),
        "attempt.envelope.user_id",
        "control",
    ),
    ("100k-char item id", attempt(item_id="i" * 100_000), "attempt.item_id", "at most"),
    ("1M-char response", attempt(response="r" * 1_000_000), "attempt.response", "at most"),
    ("400k skill ids (1.2 MB record)", many_skills(400_000), "attempt.skill_ids", "at most 64"),
    (
        "a day ahead",
        with_envelope(occurred(datetime.now(UTC) + timedelta(days=1))),
        "attempt.envelope.occurred_at",
        "future",
    ),
    (
        "year 9999",
        with_envelope(occurred(datetime(9999, 12, 31, tzinfo=UTC))),
        "attempt.envelope.occurred_at",
        "future",
    ),
    (
        "past year 9999",
        with_envelope(raw_seconds(253_402_300_800)),
        "attempt.envelope.occurred_at",
        "not a valid timestamp",
    ),
    (
        "before year 1",
        with_envelope(raw_seconds(-62_135_596_801)),
        "attempt.envelope.occurred_at",
        "not a valid timestamp",
    ),
    (
        "nanos out of range",
        with_envelope(raw_seconds(1_700_000_000, nanos=-1)),
        "attempt.envelope.occurred_at",
        "not a valid timestamp",
    ),
]

# JSON events that do not parse as a LearningEvent: rejected alone, reason from the parser.
REJECTED_JSON: list[tuple[str, dict[str, object], str]] = [
    ("lone surrogate", {"user_id": "\udc80"}, "surrogate"),
    ("year 10000", {"occurred_at": "10000-01-01T00:00:00Z"}, "occurred_at"),
    ("unknown envelope field", {"occurred_at": "2024-01-01T00:00:00Z", "x": 1}, '"x"'),
]


@pytest.fixture
async def ingest_key(db_pool: asyncpg.Pool) -> IssuedApiKey:
    return await create_api_key(db_pool, tenant_id=TENANT, app_name="bad-input")


@pytest.fixture
async def ingest(topics: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with running_ingest(topics) as client:
        yield client


async def test_broken_requests_are_named_4xx_and_bad_events_rejected_by_field(
    ingest: httpx.AsyncClient, ingest_key: IssuedApiKey, topics: Settings
) -> None:
    for case, body, content_type, status, words in REFUSED_REQUESTS:
        response = await ingest.post(
            "/v1/events", content=body, headers={**auth(ingest_key), "Content-Type": content_type}
        )
        assert response.status_code == status, (case, response.text[:300])
        assert answer_problem(response.status_code, response.headers, response.content) is None
        assert words in response.json()["detail"], (case, response.json()["detail"])

    for case, event, field, words in REJECTED_EVENTS:
        response = await ingest.post(
            "/v1/events",
            content=protobuf_body([event]),
            headers={**auth(ingest_key), "Content-Type": PROTOBUF},
        )
        answer = parse_response(response)
        (result,) = answer.results
        assert result.status == STATUS.EVENT_STATUS_REJECTED, case
        assert result.field.startswith(f"events[0].{field}"), (case, result.field)
        assert words in result.reason, (case, result.reason)

    for case, envelope_fields, words in REJECTED_JSON:
        document = {
            "events": [
                {
                    "attempt": {
                        "envelope": {"event_id": new_event_id(), "user_id": "u", **envelope_fields},
                        "item_id": "item-1",
                        "skill_ids": ["s"],
                    }
                }
            ]
        }
        response = await ingest.post(
            "/v1/events",
            # ensure_ascii: a lone surrogate travels as the JSON escape \udc80
            content=json.dumps(document, ensure_ascii=True).encode(),
            headers={**auth(ingest_key), "Content-Type": "application/json"},
        )
        answer = parse_response(response)
        (result,) = answer.results
        assert result.status == STATUS.EVENT_STATUS_REJECTED, case
        assert words in result.reason, (case, result.reason)

    assert read_topics(topics, expected=0, settle_s=1.5) == [], "a refused input was published"


async def test_read_api_refuses_text_postgresql_cannot_store(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    api_settings = settings.model_copy(update={"password_hash_profile": "cheapest"})
    await accounts.create_tenant(db_pool, tenant_id="nul-school", name="NUL School")
    await accounts.create_user(
        db_pool,
        api_settings,
        tenant_id="nul-school",
        email_address="teacher@example.org",
        password="Correct-horse-42",
        roles=frozenset({Role.TEACHER}),
        email_verified=True,
        now=datetime.now(UTC),
    )
    app = create_api(api_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://api.test",
        ) as client,
    ):
        login = await client.post(
            "/v1/auth/login",
            json={
                "tenant_id": "nul-school",
                "email": "teacher@example.org",
                "password": "Correct-horse-42",
            },
        )
        assert login.status_code == 200, login.text
        token = {"Authorization": f"Bearer {login.json()['access_token']}"}
        response = await client.post("/v1/classes", json={"name": "class\x00one"}, headers=token)
    assert 400 <= response.status_code < 500, response.text
    assert answer_problem(response.status_code, response.headers, response.content) is None
