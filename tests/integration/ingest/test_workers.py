"""``python -m ingest`` with ``ingest_workers=2``: two processes on one port, and
``/metrics`` counts the events of both (prometheus_client multiprocess mode).

The service runs as its own process tree (uvicorn master and two workers), on the
test's topics, Redis namespace and database; requests use a new connection each,
so both workers take some.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx

from infra import services
from learnstream.apikeys import IssuedApiKey
from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.ingest.support import (
    attempt,
    auth,
    event_ids,
    metrics_url,
    parse_response,
    protobuf_body,
    read_topics,
)

REQUESTS = 12
BATCH = 5


def accepted_events(metrics_text: str) -> float:
    """The ``accepted`` attempts in ingest's events counter (0 when absent)."""
    wanted = 'learnstream_ingest_events_total{kind="attempt",outcome="accepted"} '
    for line in metrics_text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_ingest(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m ingest`` with ``env``, its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_two_workers_serve_one_port_and_metrics_count_both(
    topics: Settings, db_pool: asyncpg.Pool, api_key: IssuedApiKey, tmp_path: Path
) -> None:
    own = topics.model_copy(update={"ingest_workers": 2, "ingest_port": services.free_port()})
    env = {**os.environ, **own.as_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    base = f"http://127.0.0.1:{own.ingest_port}"
    process = start_ingest(env, tmp_path / "ingest.log")
    try:
        await asyncio.to_thread(
            services.wait_for_port, "127.0.0.1", own.ingest_port, timeout_s=60, what="ingest"
        )
        sent: list[str] = []
        answered_by: set[str] = set()
        headers = {**auth(api_key), "Content-Type": "application/x-protobuf"}
        for _ in range(REQUESTS):
            batch = [attempt(f"learner-{i}") for i in range(BATCH)]
            sent += [e.attempt.envelope.event_id for e in batch]
            # A new connection per request: the kernel hands each to either worker.
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for _attempt in range(50):  # the second worker may still be starting
                    ready = await client.get("/readyz")
                    if ready.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
                answer = parse_response(
                    await client.post("/v1/events", content=protobuf_body(batch), headers=headers)
                )
                assert answer.accepted == BATCH
                metrics = (await client.get(metrics_url(own))).text
            answered_by |= {
                line.split('pid="', 1)[1].split('"', 1)[0]
                for line in metrics.splitlines()
                if line.startswith("learnstream_ingest_producer_queue_depth{")
            }
        # Whichever worker answers the scrape, it counts every worker's events.
        for _ in range(4):
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                assert accepted_events((await client.get(metrics_url(own))).text) == len(sent)
    finally:
        services.stop_pid(process.pid)
    log_text = (tmp_path / "ingest.log").read_text(errors="replace")
    assert answered_by, log_text  # the producer's queue depth is per worker, labelled by pid
    records = await asyncio.to_thread(read_topics, own, [Stream.ATTEMPTS], expected=len(sent))
    assert event_ids(records) == sorted(sent)
