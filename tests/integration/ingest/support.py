"""Helpers of the ingest integration tests: the app in-process, events, a topic reader.

The app runs in-process: its lifespan is entered directly and requests go
through ``httpx.ASGITransport``, so every test exercises the real producer,
Redis and PostgreSQL without a socket of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka._types import HeadersType

from ingest.app import create_app
from learnstream.apikeys import IssuedApiKey
from learnstream.events.v1 import (
    activity_pb2,
    attempt_pb2,
    code_submission_pb2,
    envelope_pb2,
    ingest_pb2,
    placement_pb2,
    session_pb2,
)
from learnstream.kafka import Stream, consumer_config
from learnstream.settings import Settings

TENANT = "school-1"
INPUT_STREAMS = (
    Stream.ATTEMPTS,
    Stream.CODE_SUBMISSIONS,
    Stream.SESSIONS,
    Stream.PLACEMENTS,
    Stream.ACTIVITY,
)


@asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app for ``settings`` with its lifespan entered, and a client on it."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingest", timeout=30
        ) as client,
    ):
        yield client


def metrics_url(settings: Settings) -> str:
    """Where ingest serves /metrics: its own loopback port, not the public one."""
    return f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"


def auth(key: IssuedApiKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.plaintext}"}


def new_event_id() -> str:
    return str(uuid.uuid4())


def envelope(user_id: str, event_id: str | None = None, **changes: object) -> envelope_pb2.Envelope:
    env = envelope_pb2.Envelope(
        event_id=event_id or new_event_id(), user_id=user_id, session_id="session-1"
    )
    env.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=30))
    env.source.app = "integration-tests"
    for name, value in changes.items():
        setattr(env, name, value)
    return env


def attempt(
    user_id: str = "learner-1", event_id: str | None = None, **fields: object
) -> ingest_pb2.LearningEvent:
    """A valid attempt of ``user_id``; ``fields`` override the AttemptEvent's defaults."""
    message = attempt_pb2.AttemptEvent(
        envelope=envelope(user_id, event_id),
        item_id="item-1",
        skill_ids=["fractions.add"],
        correct=True,
        response_time_ms=4200,
        attempt_number=1,
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return ingest_pb2.LearningEvent(attempt=message)


def one_of_each_kind(user_id: str) -> list[ingest_pb2.LearningEvent]:
    """Five valid events, one of each kind, for ``user_id``."""
    return [
        attempt(user_id, score=0.5, context=attempt_pb2.ATTEMPT_CONTEXT_QUIZ),
        ingest_pb2.LearningEvent(
            code_submission=code_submission_pb2.CodeSubmissionEvent(
                envelope=envelope(user_id),
                item_id="exercise-3",
                skill_ids=["loops"],
                language="python",
                source="for i in range(3):\n    print(i)\n",
                tests_passed=2,
                tests_total=3,
                runtime_ms=40,
            )
        ),
        ingest_pb2.LearningEvent(
            session=session_pb2.SessionEvent(
                envelope=envelope(user_id),
                action=session_pb2.SESSION_ACTION_STARTED,
                device_id="device-9",
            )
        ),
        ingest_pb2.LearningEvent(
            placement=placement_pb2.PlacementEvent(
                envelope=envelope(user_id),
                placement_id="placement-1",
                ability=-0.4,
                ability_se=0.35,
                items_administered=14,
                skill_estimates=[placement_pb2.SkillEstimate(skill_id="loops", p_mastery=0.62)],
            )
        ),
        ingest_pb2.LearningEvent(
            activity=activity_pb2.UserActivityEvent(
                envelope=envelope(user_id),
                kind=activity_pb2.ACTIVITY_KIND_RESOURCE_OPENED,
                resource_id="lesson-7",
                attributes={"referrer": "dashboard"},
            )
        ),
    ]


def protobuf_body(events: Iterable[ingest_pb2.LearningEvent]) -> bytes:
    return ingest_pb2.IngestRequest(events=list(events)).SerializeToString()


def parse_response(response: httpx.Response) -> ingest_pb2.IngestResponse:
    """The IngestResponse of a 200 answer, whichever format it came in."""
    from google.protobuf import json_format

    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/x-protobuf"):
        return ingest_pb2.IngestResponse.FromString(response.content)
    return json_format.Parse(response.text, ingest_pb2.IngestResponse())


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]


def read_topics(
    settings: Settings,
    streams: Iterable[Stream] = INPUT_STREAMS,
    *,
    expected: int,
    settle_s: float = 1.5,
    timeout_s: float = 30.0,
) -> list[ConsumedRecord]:
    """Every record on ``streams``: read until ``expected`` arrived and then ``settle_s``
    passed without another one (so extra copies would be seen), or ``timeout_s``.

    Partitions are assigned directly (no group join), from the beginning.
    """
    consumer = Consumer(consumer_config(settings, f"ingest-test-{uuid.uuid4().hex[:8]}"))
    try:
        names = [settings.topic(stream) for stream in streams]
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [
                TopicPartition(name, partition, OFFSET_BEGINNING)
                for name in names
                for partition in metadata.topics[name].partitions
            ]
        )
        records: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                if len(records) >= expected and time.monotonic() - quiet_since >= settle_s:
                    break
                continue
            quiet_since = time.monotonic()
            records.append(
                ConsumedRecord(
                    topic=message.topic() or "",
                    partition=message.partition() or 0,
                    key=message.key() or b"",
                    value=message.value() or b"",
                    headers=_headers(message.headers()),
                )
            )
        return records
    finally:
        consumer.close()


def _headers(raw: HeadersType | None) -> dict[str, bytes]:
    pairs = raw.items() if isinstance(raw, dict) else raw or []
    return {
        name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs
    }


def event_ids(records: Iterable[ConsumedRecord]) -> list[str]:
    return sorted(r.headers["learnstream.event_id"].decode() for r in records)


EventFactory = Callable[..., ingest_pb2.LearningEvent]
