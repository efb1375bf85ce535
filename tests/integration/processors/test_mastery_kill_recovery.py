"""kill -9 recovery of the mastery worker: nothing lost, nothing counted twice.

Real ASSISTments attempts are produced as a live stream while mastery workers
(subprocesses, ``python -m processors mastery``) come and go:

1. two workers share the partitions (a rebalance, offset rows locked by both);
2. the first is SIGKILLed at a random point; the second takes its partitions over
   (every partition stores a new offset after the kill);
3. the second is stopped with SIGTERM (graceful) at a random point;
4. a third starts and is SIGKILLed at a random point;
5. a fourth runs to the end.

skill_mastery must then equal a plain scheduler.bkt replay exactly, and the
mastery topic must hold a MasteryUpdated for every attempt, repeats
(at-least-once) being identical copies. The random seed is in every failure
message; figures (seconds from process start to first progress, events/s) are
logged at INFO: run with ``-o log_cli=true --log-cli-level=INFO`` to see them.
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
import pytest

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
    partitions_advanced_since,
    produce,
    read_attempts,
    stored_mastery,
    wait_for,
    worker_env,
)

log = logging.getLogger(__name__)

ATTEMPTS = 8000
# Produced in chunks of 200 every 0.4 s: about 16 s of live stream.
CHUNK, PAUSE_S = 200, 0.4


@pytest.mark.slow
async def test_killed_workers_resume_without_loss_or_double_counting(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Small batches: more commits per second, so a kill lands mid-transaction more often.
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "mastery")
    specs = read_attempts(shared_data / DATASET, students=100, limit=ATTEMPTS)
    records = [(spec.key(), spec.value()) for spec in specs]
    producing = asyncio.create_task(
        asyncio.to_thread(produce, settings, attempts_topic, records, chunk=CHUNK, pause_s=PAUSE_S)
    )
    env = worker_env(settings)
    workers = [WorkerProcess("mastery", env, tmp_path / f"worker{n}.log") for n in range(4)]
    startups: list[float] = []

    async def applied_beyond(threshold: int) -> bool:
        return await applied_count(db_pool, group, attempts_topic) > threshold

    async def start(worker: WorkerProcess) -> None:
        before = await applied_count(db_pool, group, attempts_topic)
        worker.start()
        first = await wait_for(
            functools.partial(applied_beyond, before),
            what=f"progress after starting {worker.log_path.name} (seed {seed})",
            timeout_s=60,
            worker=worker,
        )
        startups.append(first - worker.started_at)

    async def stop_at(worker: WorkerProcess, low: float, high: float, sig: int) -> None:
        target = int(ATTEMPTS * rng.uniform(low, high))
        await wait_for(
            functools.partial(applied_beyond, target),
            what=f"{target} records applied (seed {seed})",
            timeout_s=60,
            worker=worker,
        )
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        worker.kill(sig)

    first, second, third, last = workers
    try:
        first.start()
        await start(second)
        await stop_at(first, 0.15, 0.30, signal.SIGKILL)
        killed_at = await db_pool.fetchval("SELECT now()")
        await wait_for(
            lambda: partitions_advanced_since(
                db_pool, group, attempts_topic, killed_at, settings.topic_partitions
            ),
            what=f"the survivor taking every partition over (seed {seed})",
            timeout_s=60,
            worker=second,
        )
        await stop_at(second, 0.40, 0.55, signal.SIGTERM)
        await start(third)
        await stop_at(third, 0.65, 0.80, signal.SIGKILL)
        await start(last)
        resumed_at = await applied_count(db_pool, group, attempts_topic)
        started = asyncio.get_running_loop().time()
        ends = await asyncio.wait_for(producing, timeout=60)
        await wait_for(
            lambda: offsets_reached(db_pool, group, attempts_topic, ends),
            what=f"all offsets stored (seed {seed})",
            timeout_s=120,
            worker=last,
        )
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        producing.cancel()
        for worker in workers:
            worker.kill(signal.SIGKILL)
    log.info(
        "kill test figures: seed=%d records=%d first_progress_after_start_s=%s "
        "last_worker_events_per_s=%.0f (paced by the producer)",
        seed,
        ATTEMPTS,
        [round(s, 2) for s in startups],
        (ATTEMPTS - resumed_at) / elapsed,
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
