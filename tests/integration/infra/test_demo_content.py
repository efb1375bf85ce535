"""The demo's seed: published catalog through the CMS workflow, calibrated parameters; twice."""

from __future__ import annotations

import asyncpg
import numpy as np

from infra import demo_content, replay
from learnstream.settings import Settings

TENANT = "demo-seed"


async def test_seed_publishes_every_item_and_calibrates_and_is_idempotent(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    attempts = replay.simulated_attempts(
        np.random.default_rng(3), learners=60, skills=2, answers_per_skill=12
    )
    events = [replay.attempt_event(a, dataset="simulated", tenant_id=TENANT) for a in attempts]
    item_skills = {a.item_id: list(a.skill_ids) for a in attempts}

    first = await demo_content.seed(settings, TENANT, attempts, events)

    published = await db_pool.fetch(
        "SELECT item_id, skill_ids FROM published_content WHERE tenant_id = $1", TENANT
    )
    assert {r["item_id"]: list(r["skill_ids"]) for r in published} == item_skills
    assert first.published_items == len(item_skills)
    irt_items = await db_pool.fetchval(
        "SELECT count(*) FROM irt_item_parameters WHERE tenant_id = $1", TENANT
    )
    assert irt_items == first.irt_items > 0
    bkt_skills = await db_pool.fetch(
        "SELECT skill_id FROM bkt_parameters WHERE tenant_id = $1", TENANT
    )
    assert sorted(r["skill_id"] for r in bkt_skills) == sorted(
        {s for a in attempts for s in a.skill_ids}
    )
    transitions = await db_pool.fetchval(
        "SELECT count(*) FROM content_transitions WHERE tenant_id = $1", TENANT
    )
    assert transitions == 3 * len(item_skills)  # in_review, approved, published

    second = await demo_content.seed(settings, TENANT, attempts, events)

    assert second == first
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM content_transitions WHERE tenant_id = $1", TENANT
        )
        == transitions
    )
    assert (
        await db_pool.fetchval(
            "SELECT max(current_version) FROM content_items WHERE tenant_id = $1", TENANT
        )
        == 1
    )
