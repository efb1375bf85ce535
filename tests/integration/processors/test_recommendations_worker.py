"""The recommendations worker on the real broker and PostgreSQL.

Proves: MasteryUpdated events derived from real ASSISTments attempts give exactly the
``recommendations`` rows, bandit beliefs and RecommendationsUpdated events of a pure
replay (:func:`processors.recommendations.chain_recommendations`) over content stored
in the CMS tables; only published items are ever recommended (drafts, items under
review and archived items never); each row has a reason; sessions closed by idle
time rewarded the bandit; an item published while the worker runs is ranked on the
learner's next event (catalog cache refreshed).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import derived_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from processors.app import app_id
from processors.events import LearnerKey, MasteryStep, decode_mastery_step
from processors.offsets import SourceRecord, derived_event_id
from processors.recommendations import (
    BatchState,
    Ranking,
    RecommendationsProcessor,
    chain_recommendations,
)
from tests.integration.processors.crash import produce_in_order
from tests.integration.processors.streams import (
    mastery_records,
    random_prerequisites,
    write_concept_graph,
)
from tests.integration.processors.support import (
    DATASET,
    T0,
    TENANT,
    AttemptSpec,
    consume_all,
    offsets_reached,
    read_attempts,
    running_worker,
    wait_for,
    worker_env,
)

ViewRow = tuple[Any, ...]


def spaced_specs(
    path: Path, *, students: int, limit: int, first_student: int = 0
) -> list[AttemptSpec]:
    """Real attempts, 9 minutes apart in event time: several sessions per learner over days."""
    specs = read_attempts(path, students=students, limit=limit, first_student=first_student)
    return [replace(s, occurred_at=T0 + timedelta(minutes=9 * n)) for n, s in enumerate(specs)]


async def write_content(pool: asyncpg.Pool, skills: Sequence[str], rng: random.Random) -> set[str]:
    """Questions, lessons and videos per skill in every workflow state; the published ids."""
    published: set[str] = set()
    items: list[tuple[str, str, str, int | None, list[str]]] = []
    for skill in skills:
        for n in range(3):
            items.append((f"q-{skill}-{n}", "question", "published", 1, [skill]))
        items.append((f"lesson-{skill}", "lesson", "published", 1, [skill]))
        items.append((f"video-{skill}", "video", rng.choice(["published", "draft"]), 1, [skill]))
        items.append((f"draft-{skill}", "question", "draft", None, [skill]))
        items.append((f"review-{skill}", "code_exercise", "in_review", None, [skill]))
        items.append((f"old-{skill}", "reading", "archived", 1, [skill]))
    for item_id, kind, status, published_version, tags in items:
        await pool.execute(
            "INSERT INTO content_items (tenant_id, item_id, kind, status, current_version, "
            "published_version) VALUES ($1, $2, $3, $4, 1, $5)",
            TENANT,
            item_id,
            kind,
            status,
            published_version,
        )
        await pool.execute(
            "INSERT INTO content_versions (tenant_id, item_id, version, title, skill_ids, "
            "payload, search_vector) VALUES ($1, $2, 1, $2, $3, $4::jsonb, to_tsvector($2))",
            TENANT,
            item_id,
            tags,
            json.dumps({"expected_minutes": rng.choice([2, 3, 5])} if kind == "question" else {}),
        )
        if status == "published" and published_version is not None:
            published.add(item_id)
        if kind == "question" and rng.random() < 0.5:
            await pool.execute(
                "INSERT INTO irt_item_parameters (tenant_id, item_id, a, b) "
                "VALUES ($1, $2, $3, $4)",
                TENANT,
                item_id,
                rng.uniform(0.5, 2.0),
                rng.uniform(-2.0, 2.0),
            )
    return published


async def write_due_reviews(
    pool: asyncpg.Pool, specs: Sequence[AttemptSpec], rng: random.Random
) -> dict[LearnerKey, dict[str, datetime]]:
    """A review schedule for about half the learners (some due during the stream)."""
    due: dict[LearnerKey, dict[str, datetime]] = {}
    for spec in specs:
        key = LearnerKey(spec.tenant_id, spec.user_id)
        if key in due or rng.random() < 0.5:
            due.setdefault(key, {})
            continue
        skill = spec.skill_ids[0]
        for n in range(2):
            at = T0 + timedelta(hours=rng.uniform(0, 48))
            due.setdefault(key, {})[f"q-{skill}-{n}"] = at
            await pool.execute(
                "INSERT INTO review_schedule (tenant_id, user_id, item_id, algorithm, state, "
                "due_at, reviews, last_event_id, last_reviewed_at) "
                "VALUES ($1, $2, $3, 'fsrs', '{}'::jsonb, $4, 1, $5, $6)",
                key.tenant_id,
                key.user_id,
                f"q-{skill}-{n}",
                at,
                str(uuid.uuid4()),
                T0,
            )
    return {k: v for k, v in due.items() if v}


async def publish_question(
    pool: asyncpg.Pool, item_id: str, skill: str, *, difficulty: float
) -> None:
    """A published question on ``skill`` with calibrated IRT b = ``difficulty``."""
    await pool.execute(
        "INSERT INTO content_items (tenant_id, item_id, kind, status, current_version, "
        "published_version) VALUES ($1, $2, 'question', 'published', 1, 1)",
        TENANT,
        item_id,
    )
    await pool.execute(
        "INSERT INTO content_versions (tenant_id, item_id, version, title, skill_ids, payload, "
        "search_vector) VALUES ($1, $2, 1, $2, $3, '{}'::jsonb, to_tsvector($2))",
        TENANT,
        item_id,
        [skill],
    )
    await pool.execute(
        "INSERT INTO irt_item_parameters (tenant_id, item_id, a, b) VALUES ($1, $2, 1.0, $3)",
        TENANT,
        item_id,
        difficulty,
    )


def weak_skill_update(user_id: str, specs: Sequence[AttemptSpec]) -> bytes:
    """A MasteryUpdated after the stream: skill zz-new at p_mastery 0.05 after 5 answers."""
    envelope = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), tenant_id=TENANT, user_id=user_id)
    envelope.occurred_at.FromDatetime(specs[-1].occurred_at + timedelta(minutes=5))
    event = derived_pb2.MasteryUpdated(envelope=envelope, cause_event_id=str(uuid.uuid4()))
    event.skills.add(skill_id="zz-new", p_mastery_before=0.1, p_mastery=0.05, attempts=5)
    return event.SerializeToString()


def steps_of(records: Sequence[OutgoingRecord], topic: str) -> list[MasteryStep]:
    return [
        decode_mastery_step(SourceRecord(topic, 0, n, r.key, r.value))
        for n, r in enumerate(records)
    ]


async def expected_views(
    settings: Settings,
    pool: asyncpg.Pool,
    steps: Sequence[MasteryStep],
    due: dict[LearnerKey, dict[str, datetime]],
) -> tuple[set[ViewRow], dict[tuple[str, str], Any], list[Ranking]]:
    """The replay's recommendations rows, bandit beliefs and rankings."""
    async with pool.acquire() as conn:
        content = await RecommendationsProcessor(settings).current_content(conn, [TENANT])
    state = BatchState(learners={}, bandits={}, sessions={})
    rankings = chain_recommendations(steps, state, content, due)
    latest: dict[LearnerKey, Ranking] = {}
    for ranking in rankings:
        latest[LearnerKey(ranking.step.change.tenant_id, ranking.step.change.user_id)] = ranking
    rows = {
        (
            key.tenant_id,
            key.user_id,
            item.rank,
            item.item_id,
            item.kind,
            tuple(item.skill_ids),
            item.score,
            str(item.reason),
            item.reason_detail,
            str(r.strategy),
            r.bucket,
            r.step.change.event_id,
            r.step.change.occurred_at,
        )
        for key, r in latest.items()
        for item in r.items
    }
    bandit = {
        (tenant, bucket): (
            state.bandits[tenant].to_dict()[bucket],
            state.sessions[(tenant, bucket)],
        )
        for tenant, bucket in state.touched_buckets
    }
    return rows, bandit, rankings


def _hashable(row: Sequence[Any]) -> ViewRow:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


async def stored_views(pool: asyncpg.Pool) -> tuple[set[ViewRow], dict[tuple[str, str], Any]]:
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, rank, item_id, kind, skill_ids, score, reason, "
        "reason_detail, strategy, bucket, cause_event_id::text, computed_at FROM recommendations"
    )
    bandit = {
        (r["tenant_id"], r["bucket"]): (json.loads(r["beliefs"]), r["sessions"])
        for r in await pool.fetch("SELECT * FROM recommendation_bandit WHERE sessions > 0")
    }
    return {_hashable(tuple(r.values())) for r in rows}, bandit


def normalised_bandit(bandit: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    return {k: (json.loads(json.dumps(v[0], sort_keys=True)), v[1]) for k, v in bandit.items()}


async def test_worker_matches_the_replay_and_recommends_only_published_items(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    rng = random.Random(7)
    settings = topics.model_copy(update={"processor_web_port": 0})
    mastery_topic = settings.topic(Stream.MASTERY)
    specs = spaced_specs(shared_data / DATASET, students=12, limit=600)
    skills = sorted({s for spec in specs for s in spec.skill_ids})
    requires = random_prerequisites(skills, rng)
    await write_concept_graph(db_pool, TENANT, skills, requires)
    published = await write_content(db_pool, skills, rng)
    due = await write_due_reviews(db_pool, specs, rng)
    records = mastery_records(specs, topic=mastery_topic)
    produced = [(mastery_topic, r.key, r.value) for r in records]
    produced.insert(50, (mastery_topic, f"{TENANT}:student-0".encode(), b"\x00garbage"))
    ends = produce_in_order(settings, produced, partition=0)[mastery_topic]
    group = app_id(settings, "recommendations")
    expected_rows, expected_bandit, rankings = await expected_views(
        settings, db_pool, steps_of(records, mastery_topic), due
    )

    with running_worker("recommendations", worker_env(settings), tmp_path / "rec.log") as worker:
        await wait_for(
            lambda: offsets_reached(db_pool, group, mastery_topic, ends),
            what="all offsets stored",
            timeout_s=120,
            worker=worker,
        )
        rows, bandit = await stored_views(db_pool)

        # Content published while the worker runs is ranked on the learner's next event
        # (the catalog fingerprint changed): an easy question on a new, weak skill.
        learner = specs[-1].user_id
        await write_concept_graph(db_pool, TENANT, ["zz-new"], {})
        await publish_question(db_pool, "q-zz-new", "zz-new", difficulty=-5.0)
        published.add("q-zz-new")
        follow_up = weak_skill_update(learner, specs)
        more = produce_in_order(
            settings, [(mastery_topic, f"{TENANT}:{learner}".encode(), follow_up)], partition=0
        )[mastery_topic]
        await wait_for(
            lambda: offsets_reached(db_pool, group, mastery_topic, more),
            what="the follow-up applied",
            timeout_s=30,
            worker=worker,
        )
    followed = await db_pool.fetch(
        "SELECT item_id FROM recommendations WHERE user_id = $1 ORDER BY rank", learner
    )
    assert "q-zz-new" in [r["item_id"] for r in followed]

    assert rows == expected_rows
    assert normalised_bandit(bandit) == normalised_bandit(expected_bandit)

    # Only published items, every learner served, reasons from the scorer.
    assert {row[3] for row in rows} <= published
    assert {row[1] for row in rows} == {spec.user_id for spec in specs}
    reasons = {row[7] for row in rows}
    assert reasons <= {"due_review", "gap", "difficulty_match", "learning_path", "variety"}
    assert {"gap", "difficulty_match"} <= {str(i.reason) for r in rankings for i in r.items}
    assert "due_review" in {str(i.reason) for r in rankings for i in r.items}
    assert {"lesson"} <= {row[4] for row in rows} | {i.kind for r in rankings for i in r.items}
    # Idle gaps closed sessions, and each closed session rewarded one bucket's arm.
    assert sum(sessions for _, sessions in bandit.values()) > 0

    causes = [r.step.change.event_id for r in rankings]
    causes.append(derived_pb2.MasteryUpdated.FromString(follow_up).envelope.event_id)
    wanted = {derived_event_id(cause, "recommendations_updated") for cause in causes}
    seen: dict[str, bytes] = {}

    def every_event(messages: list[Any]) -> bool:
        for message in messages:
            event = derived_pb2.RecommendationsUpdated.FromString(message.value())
            seen[event.envelope.event_id] = message.value()
        return set(seen) >= wanted

    consume_all(settings, settings.topic(Stream.RECOMMENDATIONS), until=every_event, timeout_s=30)
    assert set(seen) == wanted
    for value in seen.values():
        event = derived_pb2.RecommendationsUpdated.FromString(value)
        assert {item.item_id for item in event.items} <= published
