"""kill -9 recovery of the aggregates worker: windowed counts exact after crashes.

Real ASSISTments attempts (some given a second skill, partial credit, or an event
time far in the past, i.e. late) are produced over all partitions; the worker is
SIGKILLed twice and SIGTERMed once at random points and restarted each time. Then
``activity_aggregates`` must equal counts computed here directly from the produced
attempts (a plain loop, not the processor's code): attempts, correct, score sum and
distinct active learners per tenant x minute/hour x skill (and the all-skills row),
and accuracy = correct / attempts. The counts are commutative, so this holds with
partitions interleaved in any order. A poison record is dead-lettered on the way.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.processors.crash import produce_in_order, run_with_kills
from tests.integration.processors.support import DATASET, AttemptSpec, read_attempts

log = logging.getLogger(__name__)

ATTEMPTS = 3000
Key = tuple[str, str, datetime, str]


def window_of(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def expected_aggregates(specs: list[AttemptSpec]) -> dict[Key, tuple[int, int, float, int, float]]:
    """(attempts, correct, score_sum, active_learners, accuracy) per row, by a plain loop."""
    counts: dict[Key, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    learners: dict[Key, set[str]] = defaultdict(set)
    for spec in specs:
        score = spec.score if spec.score is not None else float(spec.correct)
        for granularity, seconds in (("minute", 60), ("hour", 3600)):
            start = window_of(spec.occurred_at, seconds)
            for skill in ("", *dict.fromkeys(spec.skill_ids)):
                key = (spec.tenant_id, granularity, start, skill)
                counts[key][0] += 1
                counts[key][1] += int(spec.correct)
                counts[key][2] += score
                learners[key].add(spec.user_id)
    return {
        key: (int(a), int(c), s, len(learners[key]), c / a) for key, (a, c, s) in counts.items()
    }


async def test_killed_aggregates_worker_counts_every_attempt_once(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    specs = read_attempts(shared_data / DATASET, students=60, limit=ATTEMPTS)
    for index, spec in enumerate(specs):
        changes: dict[str, object] = {}
        if rng.random() < 0.1:
            changes["skill_ids"] = (*spec.skill_ids, "extra-skill")
        if rng.random() < 0.1:
            changes["score"] = rng.choice([0.25, 0.5, 0.75])  # exact in binary: sums are exact
        if rng.random() < 0.05:
            changes["occurred_at"] = spec.occurred_at - timedelta(hours=rng.randint(1, 48))
        specs[index] = dataclasses.replace(spec, **changes)  # type: ignore[arg-type]
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    records = [(attempts_topic, spec.key(), spec.value()) for spec in specs]
    records.insert(len(records) // 2, (attempts_topic, b"tenant-a:poison", b"\xffnot protobuf"))
    ends = produce_in_order(settings, records, partition=None)

    report = await run_with_kills(
        "aggregates", settings, db_pool, ends, log_dir=tmp_path, rng=rng, what=f"seed {seed}"
    )
    log.info("aggregates drill: seed=%d %s", seed, report)

    rows = await db_pool.fetch(
        "SELECT tenant_id, granularity, window_start, skill_id, attempts, correct, score_sum, "
        "active_learners, accuracy FROM activity_aggregates"
    )
    stored = {
        (r["tenant_id"], r["granularity"], r["window_start"], r["skill_id"]): (
            r["attempts"],
            r["correct"],
            r["score_sum"],
            r["active_learners"],
            r["accuracy"],
        )
        for r in rows
    }
    expected = expected_aggregates(specs)
    assert stored == expected, f"seed {seed}"
    # Not vacuous: several windows, late ones included, and multi-learner windows.
    assert len({k[2] for k in expected if k[1] == "hour"}) >= 3
    assert max(v[3] for v in expected.values()) > 10
