"""The learner-state worker as deployed (``python -m processors learner_state``).

Real ASSISTments attempts with problem ids, two tenants (FSRS and SM-2 in
``tenant_settings``), fitted BKT parameters for some skills and calibrated IRT
parameters for two thirds of the items. Proves, against oracles built from
scheduler/ alone:

* skill_mastery equals a plain BKT loop with each skill's parameters (exactly);
* learner_ability equals EAP over every calibrated answer at once (to 1e-9), and
  answers to uncalibrated items leave it alone;
* review_schedule equals a plain replay of the tenant's algorithm per item (exactly);
* attempts holds every event once, in the monthly partitions of its event time, and
  an event delivered again (a client retry past ingest) changes no view;
* the Redis hot cache holds each touched row at its PostgreSQL version.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import app_id
from processors.learner_cache import LearnerCache
from tests.integration.processors.learners import (
    AKT_FILE,
    attempt_partitions,
    calibrated_items,
    expected_ability,
    expected_mastery,
    expected_reviews,
    fitted_parameters,
    read_item_attempts,
    stored_ability,
    stored_attempts,
    stored_mastery,
    stored_reviews,
    write_parameters,
)
from tests.integration.processors.support import (
    offsets_reached,
    produce,
    running_worker,
    wait_for,
    worker_env,
)


async def test_worker_keeps_every_learner_view(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    attempts = read_item_attempts(shared_data / AKT_FILE, learners=60, limit=3000)
    bkt, items = fitted_parameters(attempts), calibrated_items(attempts)
    await write_parameters(db_pool, bkt, items)
    records = [(a.key(), a.value()) for a in attempts]
    retried = attempts[10]
    records.append((retried.key(), retried.value()))  # the same event again, much later
    topic = settings.topic(Stream.ATTEMPTS)
    ends = produce(settings, topic, records)

    with running_worker("learner_state", worker_env(settings), tmp_path / "worker.log") as worker:
        await wait_for(
            lambda: offsets_reached(db_pool, app_id(settings, "learner_state"), topic, ends),
            what="all offsets stored",
            timeout_s=120,
            worker=worker,
        )

    assert await stored_mastery(db_pool) == expected_mastery(attempts, bkt)
    ability = await stored_ability(db_pool)
    expected = expected_ability(attempts, items)
    assert ability.keys() == expected.keys()
    for learner, (theta, se, n) in expected.items():
        assert ability[learner][0] == pytest.approx(theta, abs=1e-9), learner
        assert ability[learner][1] == pytest.approx(se, abs=1e-9), learner
        assert ability[learner][2] == n
    assert await stored_reviews(db_pool) == expected_reviews(attempts)

    recorded = await stored_attempts(db_pool)
    assert set(recorded) == {a.event_id for a in attempts}
    assert all(recorded[a.event_id][1] == a.item_id for a in attempts)
    march = sum(a.occurred_at.month == 3 for a in attempts)
    assert await attempt_partitions(db_pool) == {
        "attempts_p202403": march,
        "attempts_p202404": len(attempts) - march,
    }

    cache = LearnerCache(settings)
    try:
        for tenant_id, user_id in sorted({(a.tenant_id, a.user_id) for a in attempts})[:4]:
            cached = await cache.read(tenant_id, user_id)
            rows = await db_pool.fetch(
                "SELECT skill_id, p_mastery, attempts, version FROM skill_mastery "
                "WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
            )
            for row in rows:
                entry = cached[f"mastery:{row['skill_id']}"]
                assert (entry["p_mastery"], entry["attempts"], entry["version"]) == (
                    row["p_mastery"],
                    row["attempts"],
                    row["version"],
                )
            reviews = await db_pool.fetch(
                "SELECT item_id, due_at, version FROM review_schedule "
                "WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
            )
            for row in reviews:
                entry = cached[f"review:{row['item_id']}"]
                assert (entry["due_at"], entry["version"]) == (
                    row["due_at"].isoformat(),
                    row["version"],
                )
            theta = await db_pool.fetchrow(
                "SELECT ability, version FROM learner_ability "
                "WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
            )
            if theta is not None:
                assert (cached["ability"]["ability"], cached["ability"]["version"]) == (
                    theta["ability"],
                    theta["version"],
                )
            assert json.dumps(cached)  # JSON through and through
    finally:
        await cache.close()
