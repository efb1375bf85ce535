"""kill -9 recovery of the learner-state workers: every view identical to an uninterrupted run.

Real ASSISTments attempts with item ids, fitted BKT parameters, calibrated items and
two tenants (FSRS, SM-2) are produced as a live stream while learner-state workers
come and go: two share the partitions, one is SIGKILLed and the other takes over,
one stops with SIGTERM, one more is SIGKILLed, the last runs to the end
(tests/integration/processors/scenarios.py).

The uninterrupted run is the processor's pure step applied to every attempt in one
go, with no database in between (processors.learner_state.learner_changes): the
stored skill_mastery, learner_ability (ability, SE and the posterior itself) and
review_schedule must equal it bit for bit, skill_mastery and review_schedule must
also equal the scheduler/ oracles, and attempts must hold every event exactly once.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import numpy as np
import pytest

from learnstream.kafka import Stream
from learnstream.settings import Settings
from learnstream.views.calibration import ItemParams
from processors.events import Attempt, LearnerKey
from processors.learner_state import (
    LearnerParameters,
    LearnerStates,
    learner_changes,
)
from tests.integration.processors.learners import (
    AKT_FILE,
    SCHEDULERS,
    ItemAttempt,
    calibrated_items,
    expected_mastery,
    expected_reviews,
    fitted_parameters,
    read_item_attempts,
    stored_attempts,
    stored_mastery,
    stored_reviews,
    write_parameters,
)
from tests.integration.processors.scenarios import run_kill_scenario

ATTEMPTS = 6000


def as_attempt(spec: ItemAttempt) -> Attempt:
    return Attempt(
        event_id=spec.event_id,
        tenant_id=spec.tenant_id,
        user_id=spec.user_id,
        session_id="",
        skill_ids=spec.skill_ids,
        correct=spec.correct,
        score=spec.credit,
        occurred_at=spec.occurred_at,
        item_id=spec.item_id,
        response_time_ms=spec.response_time_ms,
    )


@pytest.mark.slow
async def test_killed_learner_state_workers_leave_identical_views(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    specs = read_item_attempts(shared_data / AKT_FILE, learners=100, limit=ATTEMPTS)
    bkt, items = fitted_parameters(specs), calibrated_items(specs)
    await write_parameters(db_pool, bkt, items)
    run = await run_kill_scenario(
        "learner_state",
        settings,
        db_pool,
        settings.topic(Stream.ATTEMPTS),
        [(spec.key(), spec.value()) for spec in specs],
        tmp_path,
        chunk=150,
    )
    seed = run.seed

    uninterrupted = learner_changes(
        [as_attempt(spec) for spec in specs],
        LearnerStates({}, {}, {}, {}, {}, {}),
        LearnerParameters(
            bkt=bkt,
            items={key: ItemParams(*abc) for key, abc in items.items()},
            scheduler=SCHEDULERS,
        ),
        mastery_topic="unused",
    )
    mastery = await stored_mastery(db_pool)
    assert mastery == {
        key: (s.p_mastery, s.attempts, s.correct) for key, s in uninterrupted.mastery.items()
    }, f"seed {seed}"
    assert mastery == expected_mastery(specs, bkt), f"seed {seed}"

    rows = await db_pool.fetch(
        "SELECT tenant_id, user_id, ability, ability_se, n_responses, log_density "
        "FROM learner_ability"
    )
    assert {LearnerKey(r["tenant_id"], r["user_id"]) for r in rows} == set(uninterrupted.ability), (
        f"seed {seed}"
    )
    for row in rows:
        expected = uninterrupted.ability[LearnerKey(row["tenant_id"], row["user_id"])]
        assert (row["ability"], row["ability_se"], row["n_responses"]) == (
            expected.estimate.ability,
            expected.estimate.ability_se,
            expected.posterior.n_responses,
        ), f"seed {seed}"
        assert np.array_equal(row["log_density"], expected.posterior.log_density), f"seed {seed}"

    reviews = await stored_reviews(db_pool)
    assert reviews == {
        key: (r.algorithm, r.state, r.due_at, r.reviews) for key, r in uninterrupted.reviews.items()
    }, f"seed {seed}"
    assert reviews == expected_reviews(specs), f"seed {seed}"

    recorded = await stored_attempts(db_pool)
    assert set(recorded) == {spec.event_id for spec in specs}, f"seed {seed}"
    assert await db_pool.fetchval("SELECT count(*) FROM attempts") == len(specs), f"seed {seed}"
