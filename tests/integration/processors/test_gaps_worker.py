"""The gaps worker on the real broker and PostgreSQL.

Proves: MasteryUpdated events derived from real ASSISTments attempts (as the mastery
processor emits them) give exactly the knowledge_gaps rows and GapDetected events of
a pure replay (:func:`processors.gaps.chain_gaps`) over a prerequisite graph stored
in the CMS tables; the view holds rows only for skills with evidence and has open,
insufficient-data and non-gap rows; a prerequisite edge added while the worker runs
is used by the very next event (the graph version trigger), raising the gap's
blocked-skills count; a poison record is dead-lettered and the rest applied.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import derived_pb2
from learnstream.kafka import DEADLETTER_PROCESSOR_HEADER, Stream
from learnstream.settings import Settings
from processors.app import app_id
from processors.events import LearnerKey, decode_mastery_updated
from processors.gaps import GapRow, chain_gaps
from processors.offsets import SourceRecord
from scheduler.gaps import ConceptGraph, GapState
from tests.integration.processors.crash import produce_in_order
from tests.integration.processors.streams import (
    mastery_records,
    random_prerequisites,
    write_concept_graph,
)
from tests.integration.processors.support import (
    DATASET,
    TENANT,
    consume_all,
    offsets_reached,
    read_attempts,
    running_worker,
    wait_for,
    worker_env,
)


async def stored_gaps(pool: asyncpg.Pool) -> dict[LearnerKey, dict[str, GapRow]]:
    rows = await pool.fetch("SELECT * FROM knowledge_gaps")
    stored: dict[LearnerKey, dict[str, GapRow]] = {}
    for r in rows:
        stored.setdefault(LearnerKey(r["tenant_id"], r["user_id"]), {})[r["skill_id"]] = GapRow(
            status=GapState(r["status"]),
            severity=r["severity"],
            confidence=r["confidence"],
            p_mastery=r["p_mastery"],
            attempts=r["attempts"],
            blocked_skills=r["blocked_skills"],
            last_evidence_at=r["last_evidence_at"],
            opened_at=r["opened_at"],
            resolved_at=r["resolved_at"],
            last_event_id=str(r["last_event_id"]),
        )
    return stored


def decoded(records: list[Any], topic: str) -> list[Any]:
    return [
        decode_mastery_updated(SourceRecord(topic, 0, n, r.key, r.value))
        for n, r in enumerate(records)
    ]


async def test_worker_matches_the_replay_and_sees_graph_edits(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    mastery_topic = settings.topic(Stream.MASTERY)
    specs = read_attempts(shared_data / DATASET, students=25, limit=1500)
    skills = sorted({s for spec in specs for s in spec.skill_ids})
    requires = random_prerequisites(skills, random.Random(4))
    await write_concept_graph(db_pool, TENANT, skills, requires)
    records = mastery_records(specs, topic=mastery_topic)
    changes = decoded(records, mastery_topic)
    produced = [(mastery_topic, r.key, r.value) for r in records]
    produced.insert(100, (mastery_topic, f"{TENANT}:student-0".encode(), b"\x00garbage"))
    ends = produce_in_order(settings, produced, partition=None)[mastery_topic]
    group = app_id(settings, "gaps")

    expected, announced = chain_gaps(changes, {}, {TENANT: ConceptGraph(requires)})
    with running_worker("gaps", worker_env(settings), tmp_path / "gaps.log") as worker:
        await wait_for(
            lambda: offsets_reached(db_pool, group, mastery_topic, ends),
            what="all offsets stored",
            timeout_s=90,
            worker=worker,
        )
        assert await stored_gaps(db_pool) == expected

        # A graph edit while the worker runs: the learner's open gap on `target` now
        # blocks two new skills; the next MasteryUpdated on it must count them.
        learner, rows = next(
            (k, v)
            for k, v in sorted(expected.items())
            if any(r.status is GapState.OPEN for r in v.values())
        )
        target = next(s for s, r in sorted(rows.items()) if r.status is GapState.OPEN)
        before = rows[target].blocked_skills
        await write_concept_graph(
            db_pool, TENANT, ["new-a", "new-b"], {"new-a": [target], "new-b": ["new-a"]}
        )
        follow_up = derived_pb2.MasteryUpdated.FromString(
            next(
                r.value
                for r in reversed(records)
                if decoded([r], mastery_topic)[0].user_id == learner.user_id
            )
        )
        follow_up.envelope.event_id = str(uuid.uuid4())
        follow_up.envelope.occurred_at.FromDatetime(specs[-1].occurred_at + timedelta(minutes=5))
        del follow_up.skills[:]
        follow_up.skills.add(
            skill_id=target, p_mastery=rows[target].p_mastery, attempts=rows[target].attempts + 1
        )
        more = produce_in_order(
            settings,
            [
                (
                    mastery_topic,
                    f"{TENANT}:{learner.user_id}".encode(),
                    follow_up.SerializeToString(),
                )
            ],
            partition=None,
        )[mastery_topic]

        async def follow_up_applied() -> bool:
            return await offsets_reached(db_pool, group, mastery_topic, {**ends, **more})

        await wait_for(follow_up_applied, what="the follow-up applied", timeout_s=30, worker=worker)
    row = (await stored_gaps(db_pool))[learner][target]
    assert row.status is GapState.OPEN
    new_blocked = {"new-a", "new-b"}  # no evidence on either: both count as not mastered
    assert row.blocked_skills == before + len(new_blocked)

    statuses = {r.status for rows in expected.values() for r in rows.values()}
    assert {GapState.OPEN, GapState.INSUFFICIENT_DATA} <= statuses
    assert statuses & {GapState.CLEAR, GapState.RESOLVED}
    evidence = {(s.tenant_id, s.user_id, k) for s in specs for k in s.skill_ids}
    assert {(k.tenant_id, k.user_id, s) for k, v in expected.items() for s in v} == evidence

    expected_events = {(a.change.event_id, a.skill_id, a.row.status.name) for a in announced}
    seen: set[tuple[str, str, str]] = set()

    def all_events(messages: list[Any]) -> bool:
        seen.clear()
        for message in messages:
            event = derived_pb2.GapDetected.FromString(message.value())
            status = derived_pb2.GapStatus.Name(event.status).removeprefix("GAP_STATUS_")
            seen.add((event.cause_event_id, event.skill_id, status))
        return seen >= expected_events

    consume_all(settings, settings.topic(Stream.GAPS), until=all_events, timeout_s=30)
    # Exactly the replay's announcements: the follow-up kept the gap open, which is no change.
    assert seen == expected_events

    dead = consume_all(settings, settings.topic(Stream.DEADLETTER), until=bool, timeout_s=20)
    assert len(dead) == 1
    assert dict(dead[0].headers())[DEADLETTER_PROCESSOR_HEADER] == b"gaps"
