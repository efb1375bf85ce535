"""Consumer lag and partition liveness on a worker's /metrics page, through an outage.

A learner-state worker runs with its metrics page on and PostgreSQL behind a proxy
the test can cut. Proves, by scraping ``/metrics`` as Prometheus would:

1. once everything is applied, every partition reports lag 0 and the broker's end
   offset equals what was produced (the end offset survives Tansu's wrong
   ListOffsets answer);
2. with PostgreSQL cut and new records arriving, the partitions that got records
   report exactly that many records of lag and, after the stall threshold,
   ``learnstream_processor_partition_stalled`` = 1, while partitions without new
   records stay unstalled;
3. once PostgreSQL is back the lag drains to 0 and nothing is stalled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from infra.services import free_port
from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import app_id
from tests.integration.processors.support import (
    DATASET,
    TcpProxy,
    offsets_reached,
    produce,
    read_attempts,
    running_worker,
    wait_for,
    worker_env,
)

Gauges = dict[str, dict[int, float]]  # metric name -> partition -> value


async def scrape(port: int, topic: str) -> Gauges:
    """This worker's per-partition gauges of ``topic``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    gauges: Gauges = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("topic") == topic and "partition" in sample.labels:
                gauges.setdefault(sample.name, {})[int(sample.labels["partition"])] = sample.value
    return gauges


def scraped_until(
    port: int, topic: str, condition: Callable[[Gauges], bool]
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            return condition(await scrape(port, topic))
        except httpx.HTTPError:
            return False  # the page is not up yet

    return check


async def test_lag_and_stalls_are_visible_on_the_metrics_page(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432, free_port())
    await proxy.start()
    database = topics.database_url.rsplit("/", 1)[1]
    port = free_port()
    settings = topics.model_copy(
        update={
            "database_url": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
            "processor_web_port": port,
            "processor_lag_interval_s": 0.5,
            "processor_stall_after_s": 2.0,
        }
    )
    topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "learner_state")
    specs = read_attempts(shared_data / DATASET, students=30, limit=1200)
    first, later = specs[:1000], specs[1000:]
    ends = produce(settings, topic, [(s.key(), s.value()) for s in first])

    try:
        with running_worker("learner_state", worker_env(settings), tmp_path / "w.log") as worker:
            await wait_for(
                lambda: offsets_reached(db_pool, group, topic, ends),
                what="the first records applied",
                timeout_s=90,
                worker=worker,
            )

            def caught_up(g: Gauges) -> bool:
                lag = g.get("learnstream_processor_consumer_lag", {})
                return len(lag) == settings.topic_partitions and not any(lag.values())

            await wait_for(
                scraped_until(port, topic, caught_up),
                what="lag 0 on every partition",
                timeout_s=30,
                worker=worker,
            )
            gauges = await scrape(port, topic)
            assert gauges["learnstream_processor_end_offset"] == {
                p: float(ends.get(p, 0)) for p in range(settings.topic_partitions)
            }
            assert not any(gauges["learnstream_processor_partition_stalled"].values())

            await proxy.stop()  # PostgreSQL unreachable for the worker
            new_ends = produce(settings, topic, [(s.key(), s.value()) for s in later])
            waiting = {p: end - ends.get(p, 0) for p, end in new_ends.items()}
            waiting = {p: n for p, n in waiting.items() if n > 0}

            def stalled(g: Gauges) -> bool:
                flags = g.get("learnstream_processor_partition_stalled", {})
                return all(flags.get(p) == 1.0 for p in waiting)

            await wait_for(
                scraped_until(port, topic, stalled),
                what="stalled partitions while PostgreSQL is cut",
                timeout_s=30,
                worker=worker,
            )
            gauges = await scrape(port, topic)
            assert {
                p: int(v) for p, v in gauges["learnstream_processor_consumer_lag"].items() if v
            } == waiting
            for partition in set(range(settings.topic_partitions)) - set(waiting):
                assert gauges["learnstream_processor_partition_stalled"][partition] == 0.0

            await proxy.start()

            def drained(g: Gauges) -> bool:
                return caught_up(g) and not any(
                    g.get("learnstream_processor_partition_stalled", {1: 1.0}).values()
                )

            await wait_for(
                scraped_until(port, topic, drained),
                what="lag drained after PostgreSQL came back",
                timeout_s=60,
                worker=worker,
            )
    finally:
        await proxy.stop()
