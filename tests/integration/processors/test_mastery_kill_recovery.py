"""kill -9 recovery of the mastery worker: nothing lost, nothing counted twice.

A few thousand real ASSISTments attempts are produced; the worker subprocess is
SIGKILLed at two random points mid-stream and stopped once with SIGTERM (the
graceful path) in between, restarted each time, and run to the end. skill_mastery
must then equal a plain scheduler.bkt replay exactly, and the mastery topic must
hold a MasteryUpdated for every attempt, repeats (at-least-once) being identical.

The random seed is in every failure message; figures (seconds from process start
to the first applied batch, events/s) are logged at INFO: run with
``-o log_cli=true --log-cli-level=INFO`` to see them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal
from pathlib import Path
from typing import Any

import asyncpg

from learnstream.events.v1 import derived_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.support import (
    DATASET,
    WorkerProcess,
    applied_count,
    consume_all,
    expected_mastery,
    offsets_reached,
    produce,
    read_attempts,
    stored_mastery,
    wait_for,
    worker_env,
)

log = logging.getLogger(__name__)

ATTEMPTS = 4000
# How each run ends, and between which fractions of the records applied it happens.
STOPS = (
    (signal.SIGKILL, 0.10, 0.30),
    (signal.SIGTERM, 0.40, 0.55),
    (signal.SIGKILL, 0.65, 0.85),
)


async def test_killed_worker_resumes_without_loss_or_double_counting(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Small batches: more commits per second, so a kill lands mid-transaction more often.
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "mastery")
    specs = read_attempts(shared_data / DATASET, students=80, limit=ATTEMPTS)
    ends = produce(settings, attempts_topic, [(spec.key(), spec.value()) for spec in specs])
    total = sum(ends.values())

    async def applied_beyond(threshold: int) -> bool:
        return await applied_count(db_pool, group, attempts_topic) > threshold

    worker = WorkerProcess("mastery", worker_env(settings), tmp_path / "worker.log")
    startups: list[float] = []
    try:
        for sig, low, high in STOPS:
            before = await applied_count(db_pool, group, attempts_topic)
            worker.start()
            first = await wait_for(
                functools.partial(applied_beyond, before),
                what=f"progress after start #{worker.starts} (seed {seed})",
                timeout_s=60,
                worker=worker,
            )
            startups.append(first - worker.started_at)
            target = int(total * rng.uniform(low, high))
            await wait_for(
                functools.partial(applied_beyond, target),
                what=f"{target} records applied (seed {seed})",
                timeout_s=60,
                worker=worker,
            )
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            worker.kill(sig)
        before = await applied_count(db_pool, group, attempts_topic)
        worker.start()
        started = await wait_for(
            functools.partial(applied_beyond, before),
            what=f"progress after the last start (seed {seed})",
            timeout_s=60,
            worker=worker,
        )
        startups.append(started - worker.started_at)
        resumed_at = await applied_count(db_pool, group, attempts_topic)
        done = await wait_for(
            lambda: offsets_reached(db_pool, group, attempts_topic, ends),
            what=f"all offsets stored (seed {seed})",
            timeout_s=120,
            worker=worker,
        )
    finally:
        worker.kill(signal.SIGKILL)
    log.info(
        "kill test figures: seed=%d records=%d first_progress_after_start_s=%s "
        "last_run_events_per_s=%.0f",
        seed,
        total,
        [round(s, 2) for s in startups],
        (total - resumed_at) / (done - started),
    )

    assert await stored_mastery(db_pool) == expected_mastery(specs), f"seed {seed}"

    causes = {spec.event_id for spec in specs}
    copies: dict[str, set[bytes]] = {}
    read = 0

    def every_cause_seen(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            event = derived_pb2.MasteryUpdated.FromString(message.value())
            copies.setdefault(event.cause_event_id, set()).add(message.value())
        read = len(messages)
        return set(copies) >= causes

    consume_all(settings, settings.topic(Stream.MASTERY), until=every_cause_seen, timeout_s=30)
    assert set(copies) == causes, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"
