"""Every processor at once, end to end: real answers over HTTP populate every view consistently.

The same pipeline ``make demo`` runs (ingest, all nine processors, read API, as separate
processes on the real broker, PostgreSQL and Redis), on a slice of pyBKT's ASSISTments
``as.csv`` with the demo's published catalogue and calibration. Checked across views:
mastery exists for every (learner, skill) attempted and for nothing else; the history
and the lake hold each answer exactly once; gaps, schedules, predictions and
notifications only concern learners and skills with evidence; recommendations only
name published items; the per-minute aggregates count every answer once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from infra import demo, demo_content, replay, services
from learnstream import lake
from learnstream.apikeys import create_api_key
from learnstream.settings import Settings

TENANT = "e2e-views"
ANSWERS = 1200


@pytest.fixture
async def replayed(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> AsyncIterator[tuple[Settings, list[replay.ReplayAttempt]]]:
    """The full pipeline after replaying ANSWERS real answers through HTTP."""
    unique = topics.kafka_topic_namespace
    settings = topics.model_copy(
        update={
            "ingest_port": services.free_port(),
            "api_port": services.free_port(),
            "processor_web_port": 0,
            "run_dir": topics.run_dir / unique,
            "data_dir": topics.data_dir / unique,
            "notification_sweep_interval_s": 0,  # event time only: deterministic
        }
    )
    log = shared_data / "assistments2009_pybkt_as_2020" / "as.csv"
    every_answer = replay.assistments_as_csv(log)
    every_event = [
        replay.attempt_event(a, dataset="e2e-views", tenant_id=TENANT) for a in every_answer
    ]
    async with db_pool.acquire() as conn:
        api_key = (await create_api_key(conn, tenant_id=TENANT, app_name="e2e")).plaintext
    # Catalogue and calibration from the whole log (as the DAGs would from the lake);
    # only a slice is replayed, so the test stays short.
    seeded = await demo_content.seed(settings, TENANT, every_answer, every_event)
    assert seeded.published_items > 0
    assert seeded.irt_items > 0
    attempts, events = every_answer[:ANSWERS], every_event[:ANSWERS]
    try:
        await demo.start_pipeline(settings)
        requests = replay.shard_by_learner(events, shards=3, batch_size=200)
        totals = await demo.post_replay(settings, api_key, requests, len(events))
        assert totals.outcomes == {"accepted": ANSWERS}
        await asyncio.wait_for(demo.wait_for_mastery(settings, TENANT, ANSWERS), timeout=180)
        await asyncio.wait_for(demo.wait_for_downstream(settings, quiet_s=6.0), timeout=240)
        yield settings, attempts
    finally:
        demo.stop_all(settings)


@pytest.mark.slow
async def test_every_view_is_populated_and_consistent(
    replayed: tuple[Settings, list[replay.ReplayAttempt]], db_pool: asyncpg.Pool
) -> None:
    settings, attempts = replayed
    pairs = {(a.user_id, skill) for a in attempts for skill in a.skill_ids}
    learners = {a.user_id for a in attempts}
    event_ids = {
        replay.attempt_event(a, dataset="e2e-views", tenant_id=TENANT).attempt.envelope.event_id
        for a in attempts
    }

    async def rows(query: str) -> list[asyncpg.Record]:
        return list(await db_pool.fetch(query, TENANT))

    mastery = await rows("SELECT user_id, skill_id, attempts FROM skill_mastery WHERE tenant_id=$1")
    assert {(r["user_id"], r["skill_id"]) for r in mastery} == pairs
    assert sum(r["attempts"] for r in mastery) == ANSWERS

    history = await rows("SELECT event_id::text AS event_id FROM attempts WHERE tenant_id = $1")
    assert sorted(r["event_id"] for r in history) == sorted(event_ids)

    lake_rows = lake.read_attempts(lake.default_root(settings), tenant_ids=[TENANT])
    assert sorted(lake_rows.column("event_id").to_pylist()) == sorted(event_ids)

    ability = await rows("SELECT user_id FROM learner_ability WHERE tenant_id = $1")
    assert ability, "calibrated items should give learners an ability estimate"
    assert {r["user_id"] for r in ability} <= learners

    schedule = await rows("SELECT user_id, item_id FROM review_schedule WHERE tenant_id = $1")
    assert {(r["user_id"], r["item_id"]) for r in schedule} == {
        (a.user_id, a.item_id) for a in attempts
    }

    gaps = await rows("SELECT user_id, skill_id FROM knowledge_gaps WHERE tenant_id = $1")
    assert gaps, "no gap verdicts at all"
    assert {(r["user_id"], r["skill_id"]) for r in gaps} <= pairs

    published = {
        r["item_id"]
        for r in await rows("SELECT item_id FROM published_content WHERE tenant_id = $1")
    }
    recommended = await rows("SELECT user_id, item_id FROM recommendations WHERE tenant_id = $1")
    assert recommended, "no recommendations although the catalogue is published"
    assert {r["item_id"] for r in recommended} <= published
    assert {r["user_id"] for r in recommended} <= learners

    # skill_id '' is the tenant total; each replayed answer has exactly one skill.
    windows = await rows(
        "SELECT granularity, skill_id = '' AS total, sum(attempts) AS n FROM activity_aggregates"
        " WHERE tenant_id = $1 GROUP BY 1, 2"
    )
    assert {(r["granularity"], r["total"], r["n"]) for r in windows} == {
        (granularity, total, ANSWERS)
        for granularity in ("minute", "hour")
        for total in (True, False)
    }

    scored = await rows(
        "SELECT subject_id FROM fraud_signals WHERE tenant_id = $1 AND subject_kind = 'attempt'"
    )
    assert {r["subject_id"] for r in scored} <= event_ids

    predictions = await rows("SELECT user_id, skill_id FROM skill_predictions WHERE tenant_id=$1")
    assert predictions
    assert {r["user_id"] for r in predictions} <= learners

    inbox = await rows("SELECT user_id FROM notifications WHERE tenant_id = $1")
    assert {r["user_id"] for r in inbox} <= learners
