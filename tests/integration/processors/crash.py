"""The kill -9 drill any processor's recovery test can run (gaps, fraud, aggregates).

:func:`run_with_kills` starts ``python -m processors <name>`` on records already
produced, stops it at random points (SIGKILL, then SIGTERM, then SIGKILL, each once
some share of the records is applied), restarts it each time, and lets the last run
finish every partition. The views are then compared by the caller. The worker helpers
themselves (``WorkerProcess``, ``wait_for``, ...) are those of :mod:`.support`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from confluent_kafka import KafkaError, Producer

from learnstream.kafka import producer_config
from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.support import (
    WorkerProcess,
    applied_count,
    offsets_reached,
    wait_for,
    worker_env,
)

# How each run ends, and between which shares of the records applied it happens.
STOPS = (
    (signal.SIGKILL, 0.10, 0.30),
    (signal.SIGTERM, 0.40, 0.55),
    (signal.SIGKILL, 0.65, 0.85),
)


@dataclass(frozen=True, slots=True)
class DrillReport:
    """What a drill saw: process starts and seconds from each start to first progress."""

    starts: int
    first_progress_s: tuple[float, ...]


async def total_applied(pool: asyncpg.Pool, group: str, topics: Sequence[str]) -> int:
    """Records applied so far over ``topics`` (sum of stored next offsets)."""
    counts = [await applied_count(pool, group, topic) for topic in topics]
    return sum(counts)


async def run_with_kills(
    name: str,
    settings: Settings,
    pool: asyncpg.Pool,
    ends: Mapping[str, Mapping[int, int]],
    *,
    log_dir: Path,
    rng: random.Random,
    what: str,
) -> DrillReport:
    """Run processor ``name`` to the ``ends`` (topic -> partition -> end offset) through kills.

    ``what`` (e.g. ``"seed 123"``) goes into every failure message.
    """
    group = app_id(settings, name)
    topics = sorted(ends)
    total = sum(sum(partitions.values()) for partitions in ends.values())
    worker = WorkerProcess(name, worker_env(settings), log_dir / f"{name}-worker.log")
    startups: list[float] = []

    async def applied_beyond(threshold: int) -> bool:
        return await total_applied(pool, group, topics) > threshold

    async def all_done() -> bool:
        reached = [await offsets_reached(pool, group, t, dict(ends[t])) for t in topics]
        return all(reached)

    async def start() -> None:
        before = await total_applied(pool, group, topics)
        worker.start()
        first = await wait_for(
            functools.partial(applied_beyond, before),
            what=f"progress after start #{worker.starts} ({what})",
            timeout_s=90,
            worker=worker,
        )
        startups.append(first - worker.started_at)

    try:
        for sig, low, high in STOPS:
            await start()
            target = int(total * rng.uniform(low, high))
            await wait_for(
                functools.partial(applied_beyond, target),
                what=f"{target} records applied ({what})",
                timeout_s=120,
                worker=worker,
            )
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            worker.kill(sig)
        await start()
        await wait_for(all_done, what=f"all offsets stored ({what})", timeout_s=180, worker=worker)
    finally:
        worker.kill(signal.SIGKILL)
    return DrillReport(worker.starts, tuple(startups))


async def run_to_end(
    name: str,
    settings: Settings,
    pool: asyncpg.Pool,
    ends: Mapping[str, Mapping[int, int]],
    *,
    log_dir: Path,
) -> float:
    """Run processor ``name`` uninterrupted until every partition reached ``ends``.

    Returns the seconds from the process start to the last offset stored.
    """
    group = app_id(settings, name)
    worker = WorkerProcess(name, worker_env(settings), log_dir / f"{name}-clean.log")

    async def all_done() -> bool:
        reached = [await offsets_reached(pool, group, t, dict(e)) for t, e in ends.items()]
        return all(reached)

    worker.start()
    try:
        done = await wait_for(all_done, what="all offsets stored", timeout_s=180, worker=worker)
    finally:
        worker.kill(signal.SIGKILL)
    return done - worker.started_at


def produce_in_order(
    settings: Settings, records: Sequence[tuple[str, bytes, bytes]], *, partition: int | None
) -> dict[str, dict[int, int]]:
    """Produce ``(topic, key, value)`` records in order; topic -> partition -> end offset.

    With ``partition`` every record goes to that partition, which gives the stream one
    total order (a processor with cross-learner state is then deterministic end to end);
    with None the key decides, as in production.
    """
    producer = Producer(producer_config(settings))
    ends: dict[str, dict[int, int]] = {}
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(str(error))
            return
        topic_ends = ends.setdefault(message.topic(), {})
        topic_ends[message.partition()] = max(
            topic_ends.get(message.partition(), 0), message.offset() + 1
        )

    for topic, key, value in records:
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **extra)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0, "records still unsent after 30 s"
    assert not errors, errors[:3]
    return ends


def stable_uuid(*parts: object) -> str:
    """A UUID string that is a function of ``parts`` (reproducible test ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(str(p) for p in parts)))
