"""PostgreSQL becomes unreachable under a running learner_state worker: it pauses, retries with
backoff, commits nothing past what its views hold, and resumes without loss.

The worker process (``python -m processors learner_state``) reaches PostgreSQL through a
loopback TCP proxy that the test cuts (new connections refused, open ones closed);
the machine's PostgreSQL itself is never stopped. The test reads the real database
directly. While the proxy is cut:

* processor_offsets does not move, and skill_mastery equals a plain scheduler.bkt
  replay of exactly the records below the stored offsets: no offset committed past
  an unwritten view, no view row written past a stored offset;
* the worker stays alive and retries with exponential backoff (its retry counter on
  /metrics grows, but by a handful per few seconds, not by hundreds).

When the proxy returns, the worker finishes and the views equal the replay of all.
The processors helper's BatchRunner test covers the same retry without Faust; this
one runs the deployed worker process.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from confluent_kafka import KafkaError, Message, Producer

from infra.services import free_port
from learnstream.kafka import Stream, producer_config
from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.support import (
    DATASET,
    AttemptSpec,
    TcpProxy,
    WorkerProcess,
    applied_count,
    expected_mastery,
    offsets_reached,
    read_attempts,
    stored_mastery,
    wait_for,
    worker_env,
)

OUTAGE_S = 6.0
# Backoff starts at 0.1 s and doubles (processors.base): about 6 retries in 6 s. Without
# backoff a refused connection would be retried hundreds of times.
MIN_RETRIES, MAX_RETRIES = 2, 15


def produce_placed(
    settings: Settings, topic: str, specs: list[AttemptSpec]
) -> list[tuple[int, int]]:
    """Produce ``specs`` in order; the (partition, offset) each landed at."""
    producer = Producer(producer_config(settings))
    placed: list[tuple[int, int] | None] = [None] * len(specs)
    errors: list[str] = []

    def on_delivery_for(index: int) -> Any:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                placed[index] = (message.partition() or 0, message.offset() or 0)

        return on_delivery

    for index, spec in enumerate(specs):
        producer.produce(
            topic, key=spec.key(), value=spec.value(), on_delivery=on_delivery_for(index)
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    assert all(p is not None for p in placed)
    return [p for p in placed if p is not None]


async def retries(port: int) -> float:
    """The worker's learnstream_processor_transient_retries_total (from its /metrics)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith("learnstream_processor_transient_retries_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
async def database_proxy() -> Any:
    proxy = TcpProxy("127.0.0.1", 5432, free_port())
    await proxy.start()
    yield proxy
    await proxy.stop()


def through(proxy: TcpProxy, settings: Settings) -> Settings:
    """``settings`` whose database_url goes through ``proxy``."""
    database = settings.database_url.rsplit("/", 1)[1]
    return settings.model_copy(
        update={
            "database_url": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
            "processor_web_port": free_port(),
            "processor_batch_max": 100,
        }
    )


async def test_database_outage_pauses_the_worker_and_it_resumes_without_loss(
    topics: Settings,
    db_pool: asyncpg.Pool,
    shared_data: Path,
    tmp_path: Path,
    database_proxy: TcpProxy,
) -> None:
    settings = through(database_proxy, topics)
    topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "learner_state")
    specs = read_attempts(shared_data / DATASET, students=40, limit=3000)
    placed = produce_placed(settings, topic, specs)
    ends: dict[int, int] = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    worker = WorkerProcess("learner_state", worker_env(settings), tmp_path / "worker.log")
    worker.start()
    try:

        async def some_applied() -> bool:
            return await applied_count(db_pool, group, topic) >= 600

        await wait_for(some_applied, what="600 records applied", timeout_s=90, worker=worker)
        await database_proxy.stop()
        await asyncio.sleep(0.5)  # a commit in flight at the cut has landed or not by now
        async with db_pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            stored = {
                r["partition"]: r["next_offset"]
                for r in await conn.fetch(
                    "SELECT partition, next_offset FROM processor_offsets "
                    "WHERE consumer_group = $1 AND topic = $2",
                    group,
                    topic,
                )
            }
        view_at_cut = await stored_mastery(db_pool)
        retries_at_cut = await retries(settings.processor_web_port)
        await asyncio.sleep(OUTAGE_S)
        assert worker.alive(), worker.log_tail()
        retried = await retries(settings.processor_web_port) - retries_at_cut
        offsets_after = {
            r["partition"]: r["next_offset"]
            for r in await db_pool.fetch(
                "SELECT partition, next_offset FROM processor_offsets "
                "WHERE consumer_group = $1 AND topic = $2",
                group,
                topic,
            )
        }
        view_after = await stored_mastery(db_pool)

        await database_proxy.start()
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what="all offsets stored after the outage",
            timeout_s=120,
            worker=worker,
        )
    finally:
        worker.kill(signal.SIGKILL)

    assert offsets_after == stored, "offsets moved while the database was unreachable"
    assert view_after == view_at_cut, "views changed while the database was unreachable"
    applied_before_cut = [
        spec
        for spec, (partition, offset) in zip(specs, placed, strict=True)
        if offset < stored.get(partition, 0)
    ]
    assert 0 < len(applied_before_cut) < len(specs)
    assert view_at_cut == expected_mastery(applied_before_cut)
    assert MIN_RETRIES <= retried <= MAX_RETRIES, f"{retried} retries in {OUTAGE_S} s"
    assert await stored_mastery(db_pool) == expected_mastery(specs)


async def test_readiness_reports_the_database_outage(
    topics: Settings,
    db_pool: asyncpg.Pool,
    shared_data: Path,
    tmp_path: Path,
    database_proxy: TcpProxy,
) -> None:
    settings = through(database_proxy, topics)
    url = f"http://127.0.0.1:{settings.processor_web_port}/readyz"
    await database_proxy.stop()
    worker = WorkerProcess("learner_state", worker_env(settings), tmp_path / "worker.log")
    worker.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def answers() -> bool:
                try:
                    await client.get(url)
                except httpx.TransportError:
                    return False
                return True

            await wait_for(answers, what="the web server", timeout_s=60, worker=worker)
            down = await client.get(url)
            assert down.status_code == 503, down.text
            assert "postgres" in down.text.lower()
            await database_proxy.start()

            async def ready() -> bool:
                return (await client.get(url)).status_code == 200

            await wait_for(ready, what="ready after the database returned", timeout_s=30)
    finally:
        worker.kill(signal.SIGKILL)
