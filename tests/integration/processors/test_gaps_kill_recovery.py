"""kill -9 recovery of the gaps worker: knowledge_gaps exact after crashes.

MasteryUpdated events derived from real ASSISTments attempts are produced over all
partitions, with a prerequisite graph in the CMS tables; the worker is SIGKILLed twice
and SIGTERMed once at random points and restarted each time. knowledge_gaps must then
equal the pure replay (:func:`processors.gaps.chain_gaps`) exactly; gap state is per
learner, so the order in which partitions interleave does not matter. The gaps topic
must hold every GapDetected of the replay, and repeats (at-least-once publishing
before commit) must be identical copies.
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
from processors.gaps import chain_gaps
from processors.offsets import derived_event_id
from scheduler.gaps import ConceptGraph
from tests.integration.processors.crash import produce_in_order, run_with_kills
from tests.integration.processors.streams import (
    mastery_records,
    random_prerequisites,
    write_concept_graph,
)
from tests.integration.processors.support import DATASET, TENANT, consume_all, read_attempts
from tests.integration.processors.test_gaps_worker import decoded, stored_gaps

log = logging.getLogger(__name__)


async def test_killed_gaps_worker_resumes_without_loss_or_double_counting(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    mastery_topic = settings.topic(Stream.MASTERY)
    specs = read_attempts(shared_data / DATASET, students=80, limit=4000, first_student=100)
    skills = sorted({s for spec in specs for s in spec.skill_ids})
    requires = random_prerequisites(skills, rng)
    await write_concept_graph(db_pool, TENANT, skills, requires)
    records = mastery_records(specs, topic=mastery_topic)
    ends = produce_in_order(
        settings, [(mastery_topic, r.key, r.value) for r in records], partition=None
    )

    report = await run_with_kills(
        "gaps", settings, db_pool, ends, log_dir=tmp_path, rng=rng, what=f"seed {seed}"
    )
    log.info("gaps drill: seed=%d %s", seed, report)

    expected, announced = chain_gaps(
        decoded(records, mastery_topic), {}, {TENANT: ConceptGraph(requires)}
    )
    assert await stored_gaps(db_pool) == expected, f"seed {seed}"

    wanted = {derived_event_id(a.change.event_id, f"gap_detected:{a.skill_id}") for a in announced}
    copies: dict[str, set[bytes]] = {}

    def every_event_seen(messages: list[Any]) -> bool:
        copies.clear()
        for message in messages:
            event = derived_pb2.GapDetected.FromString(message.value())
            copies.setdefault(event.envelope.event_id, set()).add(message.value())
        return set(copies) >= wanted

    consume_all(settings, settings.topic(Stream.GAPS), until=every_event_seen, timeout_s=30)
    assert set(copies) == wanted, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"
