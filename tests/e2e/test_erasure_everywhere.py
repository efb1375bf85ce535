"""An erased learner is gone from every store and stays gone: finding H1, end to end.

The pipeline runs as ``make demo`` runs it (ingest, the learner-state, aggregates,
recommendations and lake-sink processors, as separate processes on the real broker,
PostgreSQL and Redis). Three learners' real answers (ASSISTments, a few dozen) go
through HTTP; the victim's views, lake rows and hot-cache key are checked to exist.
Then the victim is erased, and the ways back are tried: a late event through ingest
(answered REJECTED ``erased``), a late event written straight to the topic (as one
accepted in the instant before the erasure would be), and a rebuild of the
learner-state view from the lake and the topics (``python -m infra.rebuild_view``).

The verdict comes from scanning each store, not from trusting the code path: every
row of every PostgreSQL table (as text), every cell of every Parquet file of the lake,
and every Redis key of the namespace with its value must not mention the victim's id;
the same scans do find the other learners. Kept by design, and so not scanned: the
tombstone (``privacy_tombstones``), the audit log, and the raw topics, whose records
age out with ``topic_retention_ms``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from redis.asyncio import Redis

from api.services import privacy
from api.services.events import EventPublisher
from infra import demo, demo_content, replay, services
from learnstream import lake
from learnstream.apikeys import create_api_key
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import EVENT_ID_HEADER, Stream, learner_key, producer_config
from learnstream.settings import REPO_ROOT, Settings
from processors.learner_cache import learner_cache_key

TENANT = "e2e-erasure"
VICTIM = "erase-me-7f3a9c"
LEARNERS = 3
ANSWERS_EACH = 12
PROCESSORS = ("learner_state", "aggregates", "recommendations", "lake_sink")
KEPT_BY_DESIGN = frozenset({"privacy_tombstones", "audit_log"})
PROTOBUF = "application/x-protobuf"


@pytest.fixture
async def pipeline(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> AsyncIterator[tuple[Settings, list[replay.ReplayAttempt], str]]:
    """The pipeline after three learners' answers went through it; the first is VICTIM."""
    unique = topics.kafka_topic_namespace
    settings = topics.model_copy(
        update={
            "ingest_port": services.free_port(),
            "api_port": services.free_port(),
            "processor_web_port": 0,
            "run_dir": topics.run_dir / unique,
            "data_dir": topics.data_dir / unique,
            "notification_sweep_interval_s": 0,
            "lake_batch_within_s": 0.5,
            "erasure_cache_ttl_s": 0.2,
        }
    )
    every_answer = replay.assistments_as_csv(
        shared_data / "assistments2009_pybkt_as_2020" / "as.csv"
    )
    by_learner: dict[str, list[replay.ReplayAttempt]] = defaultdict(list)
    for answer in every_answer:
        by_learner[answer.user_id].append(answer)
    chosen = [user for user, answers in by_learner.items() if len(answers) >= ANSWERS_EACH]
    chosen = chosen[:LEARNERS]
    attempts = [
        dataclasses.replace(a, user_id=VICTIM) if user == chosen[0] else a
        for user in chosen
        for a in by_learner[user][:ANSWERS_EACH]
    ]
    events = [replay.attempt_event(a, dataset="e2e-erasure", tenant_id=TENANT) for a in attempts]
    async with db_pool.acquire() as conn:
        api_key = (await create_api_key(conn, tenant_id=TENANT, app_name="e2e")).plaintext
    # Published items, so recommendations have something to name (IRT is optional there).
    await demo_content.publish_catalog(db_pool, TENANT, attempts)
    try:
        await demo.start_pipeline(settings, PROCESSORS)
        requests = replay.shard_by_learner(events, shards=1, batch_size=20)
        totals = await demo.post_replay(settings, api_key, requests, len(events))
        assert totals.outcomes == {"accepted": len(events)}
        await asyncio.wait_for(demo.wait_for_mastery(settings, TENANT, len(events)), timeout=180)
        await asyncio.wait_for(lake_rows_reach(settings, len(events)), timeout=120)
        await asyncio.wait_for(demo.wait_for_downstream(settings, quiet_s=4.0), timeout=180)
        yield settings, attempts, api_key
    finally:
        demo.stop_all(settings)


async def lake_rows_reach(settings: Settings, rows: int) -> None:
    root = lake.default_root(settings)
    while True:
        try:
            if lake.read_attempts(root, tenant_ids=[TENANT], columns=["event_id"]).num_rows >= rows:
                return
        except lake.LakeError:
            pass
        await asyncio.sleep(0.5)


async def tables_mentioning(pool: asyncpg.Pool, text: str) -> dict[str, int]:
    """Every public table with rows whose text form contains ``text`` (row counts)."""
    found = {}
    for record in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
        table = record["tablename"]
        if table in KEPT_BY_DESIGN:
            continue
        count = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" AS r WHERE strpos(r::text, $1) > 0', text
        )
        if count:
            found[table] = int(count)
    return found


def lake_files_mentioning(settings: Settings, text: str) -> list[str]:
    """Every Parquet file under the data folder holding ``text`` in any cell (or its path)."""
    found = []
    for path in sorted(settings.data_dir.rglob("*.parquet")):
        cells = pq.read_table(path).to_pylist()
        if text in str(path) or any(text in str(value) for row in cells for value in row.values()):
            found.append(str(path))
    return found


async def redis_keys_mentioning(redis: Redis, namespace: str, text: str) -> list[str]:
    """Every key of the namespace whose name or value contains ``text``."""
    needle = text.encode()
    found = []
    async for raw in redis.scan_iter(match=f"{namespace}:*", count=1000):
        key = raw.decode()
        kind_raw = await redis.type(raw)
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        values: list[Any]
        if kind == "string":
            values = [await redis.get(raw) or b""]
        elif kind == "hash":
            values = [b for pair in (await redis.hgetall(raw)).items() for b in pair]
        elif kind == "list":
            values = await redis.lrange(raw, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(raw))
        elif kind == "zset":
            values = list(await redis.zrange(raw, 0, -1))
        else:
            values = [await redis.dump(raw) or b""]
        if text in key or any(
            needle in value if isinstance(value, bytes) else text in str(value) for value in values
        ):
            found.append(key)
    return found


def late_attempt(settings: Settings) -> ingest_pb2.LearningEvent:
    late = replay.ReplayAttempt(
        row=10**9,
        user_id=VICTIM,
        item_id="late-item",
        skill_ids=("late-skill",),
        correct=True,
        occurred_at=datetime.now(UTC) - timedelta(seconds=5),
    )
    event = replay.attempt_event(late, dataset="e2e-erasure-late", tenant_id=TENANT)
    event.attempt.envelope.event_id = str(uuid.uuid4())
    return event


@pytest.mark.slow
async def test_erasure_leaves_nothing_in_any_store(
    pipeline: tuple[Settings, list[replay.ReplayAttempt], str], db_pool: asyncpg.Pool
) -> None:
    settings, attempts, api_key = pipeline
    bystander = next(a.user_id for a in attempts if a.user_id != VICTIM)
    redis = Redis.from_url(settings.redis_url)
    try:
        # Populated first: the views, the lake and the hot cache hold the victim.
        before = await tables_mentioning(db_pool, VICTIM)
        for table in ("skill_mastery", "attempts", "activity_window_learners", "recommendations"):
            assert before.get(table), (table, before)
        assert lake_files_mentioning(settings, VICTIM)
        assert await redis.exists(learner_cache_key(settings, TENANT, VICTIM))

        publisher = EventPublisher(settings)
        try:
            report = await privacy.erase_learner(
                db_pool,
                redis,
                settings,
                tenant_id=TENANT,
                subject_id=VICTIM,
                requested_by=("client_app", "e2e"),
                now=datetime.now(UTC),
                publisher=publisher,
            )
        finally:
            publisher.close()
        assert report.published
        assert report.lake_rows_deleted == ANSWERS_EACH

        # A late event through ingest is refused, per event.
        await asyncio.sleep(settings.erasure_cache_ttl_s + 0.3)
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"http://127.0.0.1:{settings.ingest_port}/v1/events",
                content=ingest_pb2.IngestRequest(
                    events=[late_attempt(settings)]
                ).SerializeToString(),
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "Content-Type": PROTOBUF,
                    "Accept": PROTOBUF,
                },
            )
        result = ingest_pb2.IngestResponse.FromString(answer.content)
        assert (result.results[0].status, result.results[0].reason) == (
            ingest_pb2.EventStatus.EVENT_STATUS_REJECTED,
            "erased",
        )
        # One that slipped through (accepted just before the erasure) reaches the topic.
        slipped = late_attempt(settings).attempt
        slipped.envelope.received_at.FromDatetime(datetime.now(UTC))
        producer = Producer(producer_config(settings))
        producer.produce(
            settings.topic(Stream.ATTEMPTS),
            slipped.SerializeToString(),
            learner_key(TENANT, VICTIM),
            headers=[(EVENT_ID_HEADER, slipped.envelope.event_id.encode())],
        )
        assert producer.flush(15) == 0
        await asyncio.sleep(3)  # let every processor see it
        await asyncio.wait_for(demo.wait_for_downstream(settings, quiet_s=4.0), timeout=120)
    finally:
        demo.stop_all(settings)

    # A rebuild of the learner-state view: the lake, then the topics from the start.
    rebuilt = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "infra.rebuild_view", "learner_state", "--yes", "--lake", "all"],
        cwd=REPO_ROOT,
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "replayed" in rebuilt.stdout
    demo.start_process(
        settings, "processor-learner_state", ["processors", "learner_state", "--web-port", "0"]
    )
    try:
        await asyncio.wait_for(
            demo.wait_for_mastery(
                settings, TENANT, sum(1 for a in attempts if a.user_id != VICTIM)
            ),
            timeout=180,
        )
        await asyncio.wait_for(demo.wait_for_downstream(settings, quiet_s=5.0), timeout=180)
    finally:
        demo.stop_all(settings)

    redis = Redis.from_url(settings.redis_url)
    try:
        assert await tables_mentioning(db_pool, VICTIM) == {}
        assert lake_files_mentioning(settings, VICTIM) == []
        assert await redis_keys_mentioning(redis, settings.redis_namespace, VICTIM) == []
        # The scans do find what is there: the other learners are intact.
        assert (await tables_mentioning(db_pool, bystander)).get("skill_mastery")
        assert lake_files_mentioning(settings, bystander)
        assert await redis_keys_mentioning(redis, settings.redis_namespace, bystander)
    finally:
        await redis.aclose()
