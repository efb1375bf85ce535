"""kill -9 recovery of the recommendations worker: views exact after crashes.

MasteryUpdated events from real ASSISTments attempts (spaced in event time, so
sessions close and reward the bandit) go to ONE partition: the bandit's beliefs are
shared by the tenant's learners, so only a total order makes the run comparable with
a replay. The worker is SIGKILLed twice and SIGTERMed once at random points and
restarted; ``recommendations`` and ``recommendation_bandit`` must then equal the pure
replay (:func:`processors.recommendations.chain_recommendations`) exactly, and the
topic must hold every RecommendationsUpdated, repeats being identical copies.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import derived_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.offsets import derived_event_id
from tests.integration.processors.crash import produce_in_order, run_with_kills
from tests.integration.processors.streams import (
    mastery_records,
    random_prerequisites,
    write_concept_graph,
)
from tests.integration.processors.support import DATASET, TENANT, consume_all
from tests.integration.processors.test_recommendations_worker import (
    expected_views,
    normalised_bandit,
    spaced_specs,
    steps_of,
    stored_views,
    write_content,
    write_due_reviews,
)

log = logging.getLogger(__name__)


async def test_killed_recommendations_worker_resumes_with_identical_views(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 50})
    mastery_topic = settings.topic(Stream.MASTERY)
    specs = spaced_specs(shared_data / DATASET, students=30, limit=1500, first_student=200)
    skills = sorted({s for spec in specs for s in spec.skill_ids})
    await write_concept_graph(db_pool, TENANT, skills, random_prerequisites(skills, rng))
    await write_content(db_pool, skills, rng)
    due = await write_due_reviews(db_pool, specs, rng)
    records = mastery_records(specs, topic=mastery_topic)
    ends = produce_in_order(
        settings, [(mastery_topic, r.key, r.value) for r in records], partition=0
    )
    expected_rows, expected_bandit, rankings = await expected_views(
        settings, db_pool, steps_of(records, mastery_topic), due
    )

    report = await run_with_kills(
        "recommendations", settings, db_pool, ends, log_dir=tmp_path, rng=rng, what=f"seed {seed}"
    )
    log.info("recommendations drill: seed=%d %s", seed, report)

    rows, bandit = await stored_views(db_pool)
    assert rows == expected_rows, f"seed {seed}"
    assert normalised_bandit(bandit) == normalised_bandit(expected_bandit), f"seed {seed}"

    wanted = {derived_event_id(r.step.change.event_id, "recommendations_updated") for r in rankings}
    copies: dict[str, set[bytes]] = {}

    def every_event_seen(messages: list[Any]) -> bool:
        copies.clear()
        for message in messages:
            event = derived_pb2.RecommendationsUpdated.FromString(message.value())
            copies.setdefault(event.envelope.event_id, set()).add(message.value())
        return set(copies) >= wanted

    consume_all(
        settings, settings.topic(Stream.RECOMMENDATIONS), until=every_event_seen, timeout_s=30
    )
    assert set(copies) == wanted, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"
