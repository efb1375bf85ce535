"""The mastery worker as deployed (``python -m processors mastery``), on the real broker
and PostgreSQL.

Proves: real ASSISTments attempts give exactly the skill_mastery rows of a plain
scheduler.bkt replay (float equality) and one MasteryUpdated per attempt, with the
replay's before/after values and a deterministic event_id; poison records (garbage
bytes, an AttemptEvent without skills) go to the dead-letter topic with error, origin
and processor headers while every other record is processed; /metrics counts both.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx

from infra.services import free_port
from learnstream.events.v1 import derived_pb2
from learnstream.kafka import (
    DEADLETTER_ERROR_HEADER,
    DEADLETTER_ORIGIN_HEADER,
    DEADLETTER_PROCESSOR_HEADER,
    Stream,
    learner_key,
)
from learnstream.settings import Settings
from processors.app import app_id
from processors.mastery import clamp_probability
from processors.offsets import derived_event_id
from scheduler.bkt import DEFAULT_PARAMS, update
from tests.integration.processors.support import (
    DATASET,
    T0,
    TENANT,
    AttemptSpec,
    applied_count,
    consume_all,
    expected_mastery,
    offsets_reached,
    produce,
    read_attempts,
    running_worker,
    stored_mastery,
    wait_for,
    worker_env,
)


async def test_worker_applies_real_attempts_and_deadletters_poison(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": free_port()})
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    specs = read_attempts(shared_data / DATASET, students=25, limit=1500)
    no_skills = AttemptSpec(
        event_id=str(uuid.uuid4()),
        tenant_id=TENANT,
        user_id="student-3",
        skill_ids=(),
        correct=True,
        occurred_at=T0,
    )
    garbage = (learner_key(TENANT, "student-1"), b"\xff\xfe not a protobuf")
    records = [(spec.key(), spec.value()) for spec in specs]
    records[100:100] = [garbage]
    records[700:700] = [(no_skills.key(), no_skills.value())]
    ends = produce(settings, attempts_topic, records)
    group = app_id(settings, "mastery")

    with running_worker("mastery", worker_env(settings), tmp_path / "worker.log") as worker:
        await wait_for(
            lambda: offsets_reached(db_pool, group, attempts_topic, ends),
            what="all offsets stored",
            timeout_s=90,
            worker=worker,
        )
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = await client.get(f"http://127.0.0.1:{settings.processor_web_port}/metrics")
    assert metrics.status_code == 200
    counted = {
        outcome: _sample(metrics.text, f'outcome="{outcome}",processor="mastery"')
        for outcome in ("applied", "deadlettered", "redelivered")
    }
    assert counted == {"applied": len(specs), "deadlettered": 2, "redelivered": 0}
    assert await applied_count(db_pool, group, attempts_topic) == len(records)
    assert await stored_mastery(db_pool) == expected_mastery(specs)

    dead = consume_all(
        settings, settings.topic(Stream.DEADLETTER), until=lambda m: len(m) >= 2, timeout_s=20
    )
    assert sorted(m.value() for m in dead) == sorted([garbage[1], no_skills.value()])
    for message in dead:
        headers = dict(message.headers())
        assert headers[DEADLETTER_PROCESSOR_HEADER] == b"mastery"
        assert headers[DEADLETTER_ORIGIN_HEADER].startswith(f"{attempts_topic}[".encode())
        error = headers[DEADLETTER_ERROR_HEADER].decode()
        if message.value() == garbage[1]:
            assert message.key() == garbage[0]
            assert "not a valid AttemptEvent" in error
        else:
            assert message.key() == no_skills.key()
            assert "skill_id" in error

    updates = consume_all(
        settings, settings.topic(Stream.MASTERY), until=lambda m: len(m) >= len(specs), timeout_s=30
    )
    by_cause = {}
    for message in updates:
        event = derived_pb2.MasteryUpdated.FromString(message.value())
        by_cause[event.cause_event_id] = (message.key(), event)
    assert set(by_cause) == {spec.event_id for spec in specs}
    p_by_learner_skill: dict[tuple[str, str], float] = {}
    for spec in specs:
        key, event = by_cause[spec.event_id]
        assert key == spec.key()
        assert event.envelope.event_id == derived_event_id(spec.event_id, "mastery_updated")
        assert event.model == "bkt"
        (step,) = event.skills
        p_before = p_by_learner_skill.get((spec.user_id, step.skill_id), DEFAULT_PARAMS.prior)
        p_after = clamp_probability(update(p_before, float(spec.correct), DEFAULT_PARAMS))
        assert (step.skill_id, step.p_mastery_before, step.p_mastery) == (
            spec.skill_ids[0],
            p_before,
            p_after,
        )
        p_by_learner_skill[(spec.user_id, step.skill_id)] = p_after


def _sample(exposition: str, labels: str) -> float:
    """The value of learnstream_processor_events_total{<labels>} in a Prometheus text page."""
    prefix = f"learnstream_processor_events_total{{{labels}}} "
    (line,) = [line for line in exposition.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))
