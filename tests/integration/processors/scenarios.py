"""The kill -9 scenario every stateful processor's recovery test runs.

Records are produced as a live stream while worker subprocesses of one processor
(``python -m processors <name>``) come and go:

1. two workers share the partitions (a rebalance, offset rows locked by both);
2. the first is SIGKILLed at a random point; the second takes its partitions over
   (every partition stores a new offset after the kill);
3. the second is stopped with SIGTERM (graceful) at a random point;
4. a third starts and is SIGKILLed at a random point;
5. a fourth runs to the end.

The caller then compares its views with an uninterrupted oracle. The seed goes into
every failure message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.support import (
    WorkerProcess,
    applied_count,
    offsets_reached,
    partitions_advanced_since,
    produce,
    wait_for,
    worker_env,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KillRun:
    """What a scenario run did, for the figures a test logs."""

    seed: int
    records: int
    ends: dict[int, int]  # partition -> last offset + 1
    first_progress_after_start_s: list[float]
    last_worker_events_per_s: float


async def run_kill_scenario(
    processor: str,
    settings: Settings,
    db_pool: asyncpg.Pool,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    tmp_path: Path,
    *,
    chunk: int = 200,
    pause_s: float = 0.4,
    seed: int | None = None,
) -> KillRun:
    """Produce ``records`` to ``topic`` live while workers of ``processor`` are killed.

    Returns once the last worker stored every offset. ``settings`` should disable the
    web port and may shrink batches (more commits, so kills land mid-transaction).
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    total = len(records)
    group = app_id(settings, processor)
    producing = asyncio.create_task(
        asyncio.to_thread(produce, settings, topic, records, chunk=chunk, pause_s=pause_s)
    )
    env = worker_env(settings)
    workers = [WorkerProcess(processor, env, tmp_path / f"worker{n}.log") for n in range(4)]
    startups: list[float] = []

    async def applied_beyond(threshold: int) -> bool:
        return await applied_count(db_pool, group, topic) > threshold

    async def start(worker: WorkerProcess) -> None:
        before = await applied_count(db_pool, group, topic)
        worker.start()
        first = await wait_for(
            functools.partial(applied_beyond, before),
            what=f"progress after starting {worker.log_path.name} (seed {seed})",
            timeout_s=60,
            worker=worker,
        )
        startups.append(first - worker.started_at)

    async def stop_at(worker: WorkerProcess, low: float, high: float, sig: int) -> None:
        target = int(total * rng.uniform(low, high))
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
                db_pool, group, topic, killed_at, settings.topic_partitions
            ),
            what=f"the survivor taking every partition over (seed {seed})",
            timeout_s=60,
            worker=second,
        )
        await stop_at(second, 0.40, 0.55, signal.SIGTERM)
        await start(third)
        await stop_at(third, 0.65, 0.80, signal.SIGKILL)
        await start(last)
        resumed_at = await applied_count(db_pool, group, topic)
        started = asyncio.get_running_loop().time()
        ends = await asyncio.wait_for(producing, timeout=60)
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what=f"all offsets stored (seed {seed})",
            timeout_s=120,
            worker=last,
        )
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        producing.cancel()
        for worker in workers:
            worker.kill(signal.SIGKILL)
    run = KillRun(
        seed=seed,
        records=total,
        ends=ends,
        first_progress_after_start_s=[round(s, 2) for s in startups],
        last_worker_events_per_s=(total - resumed_at) / elapsed,
    )
    log.info(
        "kill test figures (%s): seed=%d records=%d first_progress_after_start_s=%s "
        "last_worker_events_per_s=%.0f (paced by the producer)",
        processor,
        run.seed,
        run.records,
        run.first_progress_after_start_s,
        run.last_worker_events_per_s,
    )
    return run
