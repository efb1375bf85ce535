"""Processing throughput, end-to-end latency and a full dataset replay through the pipeline.

Run: ``.venv/bin/python -m bench.pipeline [--quick] [--records N] [--skip-replay]``;
only the end-to-end phase: ``--e2e-only [--rates 500,2000] [--configs 1500:0.2,-:-,-:-:2]``
(each configuration ``FETCH_MS:WITHIN_S[:WORKERS]`` overrides the consumer fetch wait and
the batch window the workers get, ``-`` keeping the default; they run one after the
other on fresh topics, so they compare under the same machine load).
Prints tables and writes ``bench/results/pipeline.json`` (py-spy profile of the
learner-state worker: ``bench/results/pipeline.pyspy.txt``).

Everything runs on loopback in an environment of its own (broker on a free port,
database ``learnstream_bench_pipeline_<pid>``, topic namespaces), stopped at the end.
Records are real answers (``assistments2009_dkvmn``, 3-line format) built exactly as
ingest publishes them (stamped AttemptEvent, key ``tenant:user``, headers).

1. **Throughput, one learner-state worker** (``python -m processors learner_state``,
   writing attempts, skill_mastery, learner_ability and review_schedule per batch): the
   worker
   starts, a warm-up of records is applied, then ``--records`` are produced at once
   (raw producer, ~1 s); the rate is counted from the moment production ended until
   PostgreSQL's ``processor_offsets`` reach the end (views and offsets are one
   transaction, so this is "attempts/s with views committed"). py-spy samples it.
2. **Baselines on the same topic, same run**: (a) a raw confluent-kafka consumer reading
   every record from the beginning; (b) a trivial Faust agent in its own process
   (``python -m bench.pipeline faust-count``: decode each AttemptEvent and count), on
   the same Faust app settings as the processors. Rate = records / (last - first).
3. **Two workers vs one**: phase 1 again on a fresh topic with two worker processes.
4. **End-to-end latency**: ingest + one worker (or ``--configs``); a paced open-loop
   sender posts 50 requests/s (10 events each for 500/s, 40 for 2,000/s) for
   ``--e2e-seconds`` each; every event is a new learner, and a poller sees when its
   skill_mastery row appears. Latency = start of the first poll query that sees the
   row - POST sent: the row committed between that query's start and the previous
   one's, so a figure overstates by less than one poll period (``POLL_S`` plus the
   query, reported as ``poll_period_ms``). Achieved rates: events sent / sending time,
   and rows visible / (last row seen - first POST) for the worker side.
5. **Full replay**: train + test files of ``assistments2009_dkvmn`` (325,637 answers)
   posted through ``POST /v1/events`` exactly as ``make demo`` does (4 senders, batches
   of 500, per-learner order), processed by one worker; total time to the last view row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.common import (
    RESULTS_DIR,
    BenchEnvironment,
    CpuMeter,
    RawRecord,
    bench_environment,
    leaf_shares,
    percentiles,
    pids_named,
    poll_until,
    print_table,
    produce_records,
    share_under,
    start_profile,
    summarize_profile,
    write_results,
)
from infra import demo, replay, services
from ingest.batch import build_record
from ingest.validation import stamp_event
from learnstream import db
from learnstream.events.v1 import attempt_pb2, ingest_pb2
from learnstream.kafka import Stream, consumer_config, ensure_topics
from learnstream.settings import Settings, get_settings
from processors.app import app_id

DATASET = "assistments2009_dkvmn"
TRAIN_FILE = "assist2009_updated_train.csv"
TEST_FILE = "assist2009_updated_test.csv"
WARMUP_RECORDS = 500
E2E_RATES = (500, 2000)
# Offered load is this many requests/s; the batch size scales with the offered rate
# (500/s: 10 events per request, 2,000/s: 40), so ingest's per-request cost stays the same.
E2E_REQUESTS_PER_S = 50
# Where the worker's CPU was, by the innermost frame's file (py-spy samples).
PROFILE_LEAVES = {
    "faust + mode": ("faust/", "mode/"),
    "aiokafka": ("aiokafka/",),
    "asyncpg": ("asyncpg/",),
    "protobuf": ("google/",),
    "confluent_kafka": ("confluent_kafka/",),
    "learnstream + processors + scheduler (ours)": ("learnstream/", "processors/", "scheduler/"),
    "asyncio, selectors, threading (event loop, I/O)": (
        "asyncio/",
        "selectors.py",
        "threading.py",
        "socket.py",
    ),
}
# Our functions, inclusive (share of samples with the frame anywhere on the stack).
PROFILE_OURS = {
    "BatchRunner.process (a batch, end to end)": "BatchRunner.process (processors/base.py",
    "Processor.apply (attempts, mastery, ability, schedule)": "Processor.apply (processors/",
    "  asyncpg (queries, commit)": "(asyncpg/",
    "  chain_updates (BKT steps)": "chain_updates (processors/bkt_chain.py",
    "decode_attempt": "decode_attempt (processors/",
    "mastery_updated (build derived event)": "mastery_updated (processors/events.py",
    "AsyncProducer.publish (derived events)": "publish (learnstream/kafka.py",
    "learner cache refresh (Redis)": "(processors/learner_cache.py",
    "AsyncProducer._poll_forever (thread)": "_poll_forever (learnstream/kafka.py",
}
# The poller's sleep between queries: the resolution of every e2e figure (see above).
# Shorter costs CPU the pipeline under test needs on a 2-core machine.
POLL_S = 0.02
# The tenant of the e2e runs' API key; each run's learners are new ("e2e-<rate>-...").
E2E_TENANT = "bench-e2e"


# --- records ------------------------------------------------------------------------


def dataset_attempts(
    settings: Settings, files: Sequence[str], max_learners: int | None
) -> list[replay.ReplayAttempt]:
    """The answers of ``files`` of the dkvmn split (learners of each file, in file order)."""
    folder = settings.dataset_dir / DATASET
    attempts: list[replay.ReplayAttempt] = []
    for name in files:
        attempts.extend(replay.three_line_file(folder / name, max_learners=max_learners))
    return attempts


def learning_events(
    attempts: Sequence[replay.ReplayAttempt], *, tenant_id: str, files_tag: str
) -> list[ingest_pb2.LearningEvent]:
    """The LearningEvents a client would post (event ids unique per file and row)."""
    return [
        replay.attempt_event(a, dataset=f"{DATASET}/{files_tag}", tenant_id=tenant_id)
        for a in attempts
    ]


def published_records(
    settings: Settings, events: Sequence[ingest_pb2.LearningEvent]
) -> list[RawRecord]:
    """The records ingest would publish for ``events`` (stamped, keyed, with headers)."""
    now = datetime.now(UTC)
    records: list[RawRecord] = []
    for event in events:
        copy = ingest_pb2.LearningEvent()
        copy.CopyFrom(event)
        stamp_event(copy, tenant_id=copy.attempt.envelope.tenant_id, received_at=now)
        record = build_record("attempt", copy.attempt, settings)
        records.append((record.key, record.value, list(record.headers)))
    return records


# --- the Faust baseline (runs as its own process) ----------------------------------------


def faust_count(expected: int, out: Path) -> None:
    """A Faust worker whose agent decodes each AttemptEvent and counts; writes its rate."""
    import faust

    from learnstream.logging import configure_logging
    from processors.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json_lines=True)
    app = create_app(settings, "faustcount")
    topic = app.topic(settings.topic(Stream.ATTEMPTS), key_serializer="raw", value_serializer="raw")
    state = {"count": 0, "first": 0.0}

    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            attempt_pb2.AttemptEvent.FromString(value)
            if state["count"] == 0:
                state["first"] = time.perf_counter()
            state["count"] += 1
            if state["count"] == expected:
                seconds = time.perf_counter() - state["first"]
                out.write_text(  # noqa: ASYNC240 (once, a few bytes, at the end)
                    json.dumps(
                        {
                            "records": expected,
                            "seconds": seconds,
                            "events_per_s": (expected - 1) / seconds,
                        }
                    )
                )

    app.agent(topic, name=f"{app.conf.id}.count")(count)
    worker = faust.Worker(
        app, loglevel=settings.log_level, quiet=True, override_logging=False, redirect_stdouts=False
    )
    worker.spinner = None
    worker.execute_from_commandline()


# --- measurements -----------------------------------------------------------------------


def namespace(env: BenchEnvironment, suffix: str, **changes: Any) -> Settings:
    """The run's settings with topic namespace ``<ns>-<suffix>`` (topics created)."""
    settings = env.settings.model_copy(
        update={
            "kafka_topic_namespace": f"{env.settings.kafka_topic_namespace}-{suffix}",
            **changes,
        }
    )
    ensure_topics(settings)
    return settings


async def applied(conn: asyncpg.Connection, settings: Settings) -> int:
    """Records of the attempts topic whose effect is committed (sum of stored offsets)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM processor_offsets "
            "WHERE consumer_group = $1 AND topic = $2",
            app_id(settings, "learner_state"),
            settings.topic(Stream.ATTEMPTS),
        )
    )


async def processor_applied_counts(ports: Sequence[int]) -> list[float]:
    """learnstream_processor_events_total{outcome=applied} of each worker's /metrics."""
    counts = []
    async with httpx.AsyncClient(timeout=5.0) as client:
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            total = 0.0
            for line in text.splitlines():
                if line.startswith("learnstream_processor_events_total") and (
                    'outcome="applied"' in line
                ):
                    total += float(line.rsplit(" ", 1)[1])
            counts.append(total)
    return counts


async def batch_sums(ports: Sequence[int]) -> dict[str, float]:
    """Sums and counts of the workers' batch histograms (seconds and records per batch)."""
    wanted = {
        "learnstream_processor_batch_seconds_sum": "seconds_sum",
        "learnstream_processor_batch_seconds_count": "batches",
        "learnstream_processor_batch_records_sum": "records_sum",
    }
    sums = dict.fromkeys(wanted.values(), 0.0)
    async with httpx.AsyncClient(timeout=5.0) as client:
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                name = line.split("{", 1)[0]
                if name in wanted:
                    sums[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return sums


@dataclass
class WorkerRun:
    """One measured mastery-processing run."""

    workers: int
    records: int
    seconds: float
    events_per_s: float
    produce_seconds: float
    per_worker_applied: list[float]
    cpu: dict[str, dict[str, float]]
    profile: dict[str, Any] | None = None


async def measure_workers(
    env: BenchEnvironment,
    records: Sequence[RawRecord],
    *,
    workers: int,
    suffix: str,
    profile_s: float | None,
) -> tuple[WorkerRun, Settings]:
    """Phase 1 or 3: ``workers`` learner_state workers through ``records`` (warm-up first)."""
    settings = namespace(env, suffix)
    topic = settings.topic(Stream.ATTEMPTS)
    ports = [services.free_port() for _ in range(workers)]
    names = [f"processor-learner_state-{suffix}-{n}" for n in range(workers)]
    pids = [
        env.start(
            name,
            ["processors", "learner_state"],
            settings.model_copy(update={"processor_web_port": port}),
        )
        for name, port in zip(names, ports, strict=True)
    ]
    conn = await db.connect(settings)
    try:
        warmup, measured = records[:WARMUP_RECORDS], records[WARMUP_RECORDS:]
        await asyncio.to_thread(produce_records, settings, topic, warmup)

        async def warmed_up() -> bool:
            for name, pid in zip(names, pids, strict=True):
                if not _alive(pid):
                    raise RuntimeError(f"{name} exited:\n{env.log_tail(name)}")
            return await applied(conn, settings) >= len(warmup)

        await poll_until(warmed_up, timeout_s=120, what=f"{suffix}: warm-up applied")
        # Let every worker finish joining the group (Tansu holds a join for half the
        # session timeout; a second worker triggers one more rebalance).
        await asyncio.sleep(env.settings.consumer_session_timeout_s * 2 + 1)
        before = await processor_applied_counts(ports)
        produced = await asyncio.to_thread(produce_records, settings, topic, measured)
        if produced.errors:
            raise RuntimeError(f"{produced.errors} records were not acknowledged")
        start_count = await applied(conn, settings)
        started = time.monotonic()
        meter = CpuMeter(
            {
                "workers": pids,
                "broker": [env.broker.pid],
                "postgres": pids_named("postgres"),
            }
        )
        profile_path = RESULTS_DIR / "pipeline.pyspy.txt"
        profiler = start_profile(pids[0], profile_s, profile_path) if profile_s else None
        total = len(records)

        async def done() -> bool:
            return await applied(conn, settings) >= total

        finished = await poll_until(done, timeout_s=900, what=f"{suffix}: all records applied")
        shares = meter.read()
        after = await processor_applied_counts(ports)
        profile = None
        if profiler is not None:
            profiler.wait(timeout=120)
            if profile_path.exists():
                profile = _profile_summary(profile_path)
    finally:
        await conn.close()
        for name in names:
            env.stop(name)
    seconds = finished - started
    run = WorkerRun(
        workers=workers,
        records=total - start_count,
        seconds=seconds,
        events_per_s=(total - start_count) / seconds,
        produce_seconds=produced.seconds,
        per_worker_applied=[a - b for a, b in zip(after, before, strict=True)],
        cpu=shares,
        profile=profile,
    )
    return run, settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _profile_summary(path: Path) -> dict[str, Any]:
    samples, lines = summarize_profile(path, top=20)
    ours = share_under(path, PROFILE_OURS.values())
    return {
        "file": str(path),
        "samples": samples,
        "by_library": leaf_shares(path, PROFILE_LEAVES),
        "ours_inclusive": {name: ours[needle] for name, needle in PROFILE_OURS.items()},
        "top_self": [
            {"function": p.function, "self": p.self_share, "total": p.total_share} for p in lines
        ],
    }


def measure_raw_consumer(settings: Settings, expected: int) -> dict[str, Any]:
    """A confluent-kafka consumer reading the attempts topic from the start: records/s."""
    consumer = Consumer(consumer_config(settings, f"bench-raw-{uuid.uuid4().hex[:8]}"))
    topic = settings.topic(Stream.ATTEMPTS)
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)]
    )
    count = 0
    first = last = 0.0
    deadline = time.monotonic() + 300
    try:
        while count < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    if count == 0:
                        first = time.perf_counter()
                    count += 1
                    last = time.perf_counter()
    finally:
        consumer.close()
    if count < expected:
        raise RuntimeError(f"raw consumer read {count} of {expected} records")
    return {"records": count, "seconds": last - first, "events_per_s": (count - 1) / (last - first)}


async def measure_faust_count(
    env: BenchEnvironment, settings: Settings, expected: int
) -> dict[str, Any]:
    """The trivial Faust agent (own process) over the attempts topic of ``settings``."""
    out = settings.run_dir / f"faust-count-{uuid.uuid4().hex[:6]}.json"
    name = "faust-count"
    pid = env.start(
        name,
        ["bench.pipeline", "faust-count", "--expected", str(expected), "--out", str(out)],
        settings,
    )
    meter = CpuMeter({"faust": [pid], "broker": [env.broker.pid]})

    async def written() -> bool:
        if not _alive(pid):
            raise RuntimeError(f"faust-count exited:\n{env.log_tail(name)}")
        return out.exists()

    try:
        await poll_until(written, timeout_s=600, what="faust-count finished")
        # Read while the process still exists (a gone PID counts nothing).
        shares = meter.read()
        await asyncio.sleep(0.2)  # the file is written in one call; let it land
        result: dict[str, Any] = json.loads(out.read_text())
    finally:
        env.stop(name)
    result["cpu_incl_startup"] = shares
    return result


async def measure_e2e(
    env: BenchEnvironment,
    settings: Settings,
    api_key: str,
    *,
    rate: int,
    seconds: float,
    worker_names: Sequence[str],
) -> dict[str, Any]:
    """POST-to-view latency at an offered ``rate`` events/s (E2E_REQUESTS_PER_S requests/s)."""
    batch = max(1, rate // E2E_REQUESTS_PER_S)
    # New learners every run (a row from an earlier run would count as seen at once).
    prefix = f"e2e-{rate}-{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{settings.ingest_port}/v1/events"
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/x-protobuf",
        "Accept": "application/x-protobuf",
    }
    interval = batch / rate
    requests_total = int(seconds * rate / batch)
    sent_at: dict[str, float] = {}  # user id -> when its POST was sent
    visible_at: dict[str, float] = {}
    answered_at: dict[str, float] = {}  # user id -> when ingest answered its POST (200)
    post_latencies: list[float] = []
    failures: list[str] = []
    occurred = datetime.now(UTC) - timedelta(minutes=1)

    def body(request_no: int) -> tuple[list[str], bytes]:
        users = [f"{prefix}-{request_no}-{k}" for k in range(batch)]
        events = []
        for user in users:
            event = ingest_pb2.LearningEvent()
            envelope = event.attempt.envelope
            envelope.event_id = str(uuid.uuid4())
            envelope.user_id = user
            envelope.occurred_at.FromDatetime(occurred)
            event.attempt.item_id = "item-e2e"
            event.attempt.skill_ids.append("skill-e2e")
            event.attempt.correct = True
            events.append(event)
        return users, ingest_pb2.IngestRequest(events=events).SerializeToString()

    async def post(client: httpx.AsyncClient, request_no: int) -> None:
        users, content = body(request_no)
        started = time.perf_counter()
        for user in users:
            sent_at[user] = started
        answer = await client.post(url, content=content, headers=headers)
        answered = time.perf_counter()
        post_latencies.append((answered - started) * 1000)
        if answer.status_code != 200:
            failures.append(f"{answer.status_code}: {answer.text[:200]}")
            return
        accepted = ingest_pb2.IngestResponse.FromString(answer.content).accepted
        if accepted != len(users):
            failures.append(f"only {accepted} of {len(users)} accepted")
        for user in users:
            answered_at[user] = answered

    conn = await db.connect(settings)
    sending_done = asyncio.Event()

    poll_starts: list[float] = []

    async def poller() -> None:
        while True:
            outstanding = [u for u in sent_at if u not in visible_at]
            if outstanding:
                # The query's start, not its answer: its snapshot is taken then, so a row
                # it returns was committed before this instant (and after the last poll).
                queried = time.perf_counter()
                poll_starts.append(queried)
                rows = await conn.fetch(
                    "SELECT user_id FROM skill_mastery WHERE tenant_id = $1 "
                    "AND user_id = ANY($2::text[])",
                    E2E_TENANT,
                    outstanding,
                )
                for row in rows:
                    visible_at[row["user_id"]] = queried
            elif sending_done.is_set():
                return
            await asyncio.sleep(POLL_S)

    ports = _worker_ports(env, worker_names)
    batches_before = await batch_sums(ports)
    meter = CpuMeter(
        {
            "ingest": _pids(env, "ingest"),
            "workers": [pid for name in worker_names for pid in _pids(env, name)],
            "broker": [env.broker.pid],
            "postgres": pids_named("postgres"),
        }
    )
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            poll_task = asyncio.create_task(poller())
            tasks = []
            start = time.perf_counter()
            for n in range(requests_total):
                # Open loop: request n goes out at start + n * interval whatever the answers.
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(client, n)))
            await asyncio.gather(*tasks)
            send_seconds = time.perf_counter() - start
            sending_done.set()
            await asyncio.wait_for(poll_task, timeout=120)
            # Sending and the backlog's processing: what the pipeline cost at this rate.
            shares = meter.read()
            load_1m = os.getloadavg()[0]
            batches_after = await batch_sums(ports)
    finally:
        await conn.close()
    latencies = [(visible_at[u] - sent_at[u]) * 1000 for u in sent_at if u in visible_at]
    # The pipeline behind ingest alone: the record was on the topic when the POST answered.
    # Negative when the row was seen before the answer reached the client.
    after_answer = [(visible_at[u] - answered_at[u]) * 1000 for u in answered_at if u in visible_at]
    last_seen = max(visible_at.values(), default=start)
    batches = {k: batches_after[k] - batches_before[k] for k in batches_after}
    count = max(batches["batches"], 1.0)
    return {
        "offered_events_per_s": rate,
        "batch": batch,
        "events": len(sent_at),
        "send_seconds": send_seconds,
        "achieved_events_per_s": len(sent_at) / send_seconds,
        "visible": len(visible_at),
        "failures": failures[:5],
        "failure_count": len(failures),
        "e2e_ms": percentiles(latencies),
        "post_ms": percentiles(post_latencies),
        "after_answer_ms": percentiles(after_answer),
        "applied_events_per_s": len(visible_at) / max(last_seen - start, 1e-9),
        "poll_interval_ms": POLL_S * 1000,
        "poll_period_ms": (
            (poll_starts[-1] - poll_starts[0]) * 1000 / (len(poll_starts) - 1)
            if len(poll_starts) > 1
            else float("nan")
        ),
        "load_avg_1m": load_1m,
        # BatchRunner.process: transaction start to commit (derived events' acks included).
        "batches": batches["batches"],
        "mean_batch_ms": batches["seconds_sum"] * 1000 / count,
        "mean_batch_records": batches["records_sum"] / count,
        "workers": len(worker_names),
        "consumer_fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "processor_batch_within_s": settings.processor_batch_within_s,
        "cpu": shares,
    }


def _worker_ports(env: BenchEnvironment, names: Sequence[str]) -> list[int]:
    """The /metrics ports of the e2e workers (written by start_e2e_pipeline)."""
    return [int((env.settings.run_dir / f"{name}.port").read_text()) for name in names]


def _pids(env: BenchEnvironment, name: str) -> list[int]:
    pid_file = env.settings.run_dir / f"{name}.pid"
    return [int(pid_file.read_text())] if pid_file.exists() else []


async def measure_replay(
    env: BenchEnvironment, settings: Settings, *, max_learners: int | None
) -> dict[str, Any]:
    """Train + test of the dkvmn split through POST /v1/events and the mastery worker."""
    tenant = "bench-replay"
    conn = await db.connect(settings)
    try:
        from learnstream.apikeys import create_api_key

        api_key = (await create_api_key(conn, tenant_id=tenant, app_name="bench-replay")).plaintext
    finally:
        await conn.close()
    events: list[ingest_pb2.LearningEvent] = []
    for name in (TRAIN_FILE, TEST_FILE):
        attempts = dataset_attempts(settings, [name], max_learners)
        events.extend(learning_events(attempts, tenant_id=tenant, files_tag=name))
    requests = replay.shard_by_learner(events, demo.SENDERS, demo.BATCH_SIZE)
    started = time.perf_counter()
    meter = CpuMeter(
        {
            "ingest": _pids(env, "ingest"),
            "worker": _pids(env, "processor-e2e"),
            "broker": [env.broker.pid],
            "postgres": pids_named("postgres"),
            "bench (HTTP senders)": [os.getpid()],
        }
    )
    totals = await demo.post_replay(settings, api_key, requests, len(events))
    after_post = await demo.wait_for_mastery(settings, tenant, totals.outcomes["accepted"])
    total_seconds = time.perf_counter() - started
    return {
        "dataset": f"{DATASET} ({TRAIN_FILE} + {TEST_FILE})",
        "max_learners_per_file": max_learners,
        "answers": len(events),
        "accepted": totals.outcomes["accepted"],
        "duplicates": totals.outcomes["duplicate"],
        "rejected": totals.outcomes["rejected"],
        "post_seconds": totals.seconds,
        "ingest_events_per_s": len(events) / totals.seconds,
        "processed_after_last_post_s": after_post,
        "total_seconds": total_seconds,
        "events_per_s": len(events) / total_seconds,
        "senders": demo.SENDERS,
        "batch": demo.BATCH_SIZE,
        "cpu": meter.read(),
    }


@dataclass(frozen=True)
class E2EConfig:
    """One e2e configuration: the consumer's fetch wait, the batch window, workers."""

    fetch_wait_ms: int | None  # None: the settings' default
    batch_within_s: float | None
    workers: int

    @classmethod
    def parse(cls, text: str) -> E2EConfig:
        """``FETCH_MS:WITHIN_S[:WORKERS]``, ``-`` for a default (e.g. ``1500:0.2``, ``-:-:2``)."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"config {text!r}: want FETCH_MS:WITHIN_S[:WORKERS]")
        fetch, within = parts[0], parts[1]
        return cls(
            fetch_wait_ms=None if fetch == "-" else int(fetch),
            batch_within_s=None if within == "-" else float(within),
            workers=int(parts[2]) if len(parts) == 3 and parts[2] != "-" else 1,
        )


async def start_e2e_pipeline(env: BenchEnvironment, config: E2EConfig, suffix: str) -> Settings:
    """Ingest and ``config.workers`` mastery workers on namespace ``suffix``."""
    changes: dict[str, Any] = {}
    if config.fetch_wait_ms is not None:
        changes["consumer_fetch_max_wait_ms"] = config.fetch_wait_ms
    if config.batch_within_s is not None:
        changes["processor_batch_within_s"] = config.batch_within_s
    e2e = namespace(env, suffix, **changes)
    env.start("ingest", ["ingest"], e2e)
    names = e2e_worker_names(config.workers)
    for name in names:
        port = services.free_port()
        (env.settings.run_dir / f"{name}.port").write_text(str(port))
        worker = e2e.model_copy(update={"processor_web_port": port})
        env.start(name, ["processors", "learner_state"], worker)
    await env.wait_ready(f"http://127.0.0.1:{e2e.ingest_port}/readyz", "ingest")
    for name, port in zip(names, _worker_ports(env, names), strict=True):
        await env.wait_ready(f"http://127.0.0.1:{port}/healthz", name)
    return e2e


def stop_e2e_pipeline(env: BenchEnvironment, config: E2EConfig) -> None:
    """Stop what :func:`start_e2e_pipeline` started."""
    for name in ["ingest", *e2e_worker_names(config.workers)]:
        env.stop(name)


def e2e_worker_names(workers: int) -> list[str]:
    """Process names of the e2e workers (the first keeps the name the replay reads)."""
    return ["processor-e2e", *(f"processor-e2e-{n}" for n in range(1, workers))]


async def measure_e2e_rates(
    env: BenchEnvironment,
    e2e: Settings,
    *,
    workers: int,
    rates: Sequence[int],
    seconds: float,
) -> list[dict[str, Any]]:
    """The e2e latency at each of ``rates`` (after a warm-up that joins the group)."""
    names = e2e_worker_names(workers)
    api_key = await env.api_key(E2E_TENANT)
    await measure_e2e(env, e2e, api_key, rate=100, seconds=2, worker_names=names)
    if workers > 1:
        # Let every worker finish joining (each one more rebalance, half a session timeout
        # each on Tansu), then warm up again so no run starts inside a rebalance.
        await asyncio.sleep(env.settings.consumer_session_timeout_s * 2 + 1)
        await measure_e2e(env, e2e, api_key, rate=100, seconds=2, worker_names=names)
    outcomes = []
    for rate in rates:
        outcome = await measure_e2e(
            env, e2e, api_key, rate=rate, seconds=seconds, worker_names=names
        )
        outcomes.append(outcome)
        print(
            f"e2e at {rate}/s ({workers} worker(s), fetch wait "
            f"{e2e.consumer_fetch_max_wait_ms} ms, within {e2e.processor_batch_within_s} s): "
            f"p50 {outcome['e2e_ms']['p50_ms']:.0f} ms, p99 {outcome['e2e_ms']['p99_ms']:.0f} ms",
            file=sys.stderr,
        )
    return outcomes


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase of this benchmark; see the module docstring."""
    results: dict[str, Any] = {"settings": vars(args).copy()}
    async with bench_environment("pipeline") as env:
        if args.e2e_only:
            # Each configuration on fresh topics and processes, one after the other, so
            # they compare under the same machine load.
            results["e2e"] = []
            for n, config in enumerate(args.configs):
                e2e = await start_e2e_pipeline(env, config, f"e2e{n}")
                try:
                    results["e2e"] += await measure_e2e_rates(
                        env, e2e, workers=config.workers, rates=args.rates, seconds=args.e2e_seconds
                    )
                finally:
                    stop_e2e_pipeline(env, config)
            return results
        base = env.settings
        attempts = dataset_attempts(base, [TRAIN_FILE], None)[: args.records + WARMUP_RECORDS]
        print(f"building {len(attempts):,} records ...", file=sys.stderr)

        def records_for(tenant: str) -> list[RawRecord]:
            events = learning_events(attempts, tenant_id=tenant, files_tag=TRAIN_FILE)
            return published_records(base, events)

        one, one_settings = await measure_workers(
            env, records_for("bench-1w"), workers=1, suffix="w1", profile_s=args.profile_seconds
        )
        print(f"1 worker: {one.events_per_s:,.0f} events/s", file=sys.stderr)
        total = len(attempts)
        raw = await asyncio.to_thread(measure_raw_consumer, one_settings, total)
        print(f"raw consumer: {raw['events_per_s']:,.0f} records/s", file=sys.stderr)
        faust_result = await measure_faust_count(env, one_settings, total)
        print(f"faust agent: {faust_result['events_per_s']:,.0f} events/s", file=sys.stderr)
        two, _ = await measure_workers(
            env, records_for("bench-2w"), workers=2, suffix="w2", profile_s=None
        )
        print(f"2 workers: {two.events_per_s:,.0f} events/s", file=sys.stderr)
        results["throughput"] = {
            "records": total,
            "warmup_records": WARMUP_RECORDS,
            "one_worker": vars(one),
            "two_workers": vars(two),
            "raw_consumer": raw,
            "faust_count_agent": faust_result,
            "ratio_one_worker_to_faust": one.events_per_s / faust_result["events_per_s"],
            "ratio_two_to_one": two.events_per_s / one.events_per_s,
            "ratio_one_worker_to_raw_consumer": one.events_per_s / raw["events_per_s"],
        }

        e2e = await start_e2e_pipeline(env, args.configs[0], "e2e")
        results["e2e"] = await measure_e2e_rates(
            env, e2e, workers=args.configs[0].workers, rates=args.rates, seconds=args.e2e_seconds
        )
        if not args.skip_replay:
            results["replay"] = await measure_replay(
                env, e2e, max_learners=40 if args.quick else None
            )
            print(f"replay: {results['replay']['events_per_s']:,.0f} events/s", file=sys.stderr)
    return results


def report(results: dict[str, Any]) -> None:
    """Tables of every phase."""
    if "throughput" in results:
        report_throughput(results["throughput"])
    report_e2e(results["e2e"])
    replay_result = results.get("replay")
    if replay_result:
        print_table(
            f"Replay of {replay_result['dataset']} through HTTP, broker and one worker",
            [
                "answers",
                "accepted",
                "POST s",
                "ingest ev/s",
                "then processed s",
                "total s",
                "events/s",
            ],
            [
                [
                    replay_result["answers"],
                    replay_result["accepted"],
                    replay_result["post_seconds"],
                    replay_result["ingest_events_per_s"],
                    replay_result["processed_after_last_post_s"],
                    replay_result["total_seconds"],
                    replay_result["events_per_s"],
                ]
            ],
        )


def _cpu(shares: dict[str, dict[str, float]], name: str) -> str:
    share = shares.get(name)
    return "-" if share is None else f"{share['cpu']:.2f}/{share['waiting']:.2f}"


def report_throughput(t: dict[str, Any]) -> None:
    """Phases 1-3: workers against the raw consumer and the trivial Faust agent."""
    print_table(
        f"Processing {t['records']:,} attempts already on the topic (cpu/wait: cores used / "
        "threads waiting for a core)",
        ["consumer", "records/s", "seconds", "x faust", "cpu/wait", "broker", "postgres"],
        [
            [
                "raw confluent-kafka consumer",
                t["raw_consumer"]["events_per_s"],
                t["raw_consumer"]["seconds"],
                t["raw_consumer"]["events_per_s"] / t["faust_count_agent"]["events_per_s"],
                "-",
                "-",
                "-",
            ],
            [
                "trivial Faust agent (decode+count)",
                t["faust_count_agent"]["events_per_s"],
                t["faust_count_agent"]["seconds"],
                1.0,
                "-",
                "-",
                "-",
            ],
            [
                "mastery, 1 worker, views committed",
                t["one_worker"]["events_per_s"],
                t["one_worker"]["seconds"],
                t["ratio_one_worker_to_faust"],
                _cpu(t["one_worker"]["cpu"], "workers"),
                _cpu(t["one_worker"]["cpu"], "broker"),
                _cpu(t["one_worker"]["cpu"], "postgres"),
            ],
            [
                "mastery, 2 workers, views committed",
                t["two_workers"]["events_per_s"],
                t["two_workers"]["seconds"],
                t["two_workers"]["events_per_s"] / t["faust_count_agent"]["events_per_s"],
                _cpu(t["two_workers"]["cpu"], "workers"),
                _cpu(t["two_workers"]["cpu"], "broker"),
                _cpu(t["two_workers"]["cpu"], "postgres"),
            ],
        ],
    )
    print(
        f"two workers / one: {t['ratio_two_to_one']:.2f} (target >= 1.6); "
        f"one worker / Faust agent: {t['ratio_one_worker_to_faust']:.2f} (target >= 0.7); "
        f"records applied per worker (2-worker run): "
        f"{[int(a) for a in t['two_workers']['per_worker_applied']]}"
    )
    profile = t["one_worker"].get("profile")
    if profile:
        print_table(
            f"py-spy, one mastery worker ({profile['samples']} samples)",
            ["self", "total", "function"],
            [
                [f"{p['self']:.1%}", f"{p['total']:.1%}", p["function"]]
                for p in profile["top_self"][:12]
            ],
        )
        print_table(
            "py-spy, one mastery worker: where the CPU was (innermost frame), by library",
            ["share", "library"],
            [[f"{share:.1%}", name] for name, share in profile["by_library"].items()],
        )
        print_table(
            "py-spy, one mastery worker: our functions, inclusive",
            ["share", "function"],
            [[f"{share:.1%}", name] for name, share in profile["ours_inclusive"].items()],
        )


def report_e2e(runs: Sequence[dict[str, Any]]) -> None:
    """Phase 4: latency per offered rate (cpu/wait: cores used / threads waiting)."""
    print_table(
        f"End to end: POST sent -> skill_mastery row visible ({E2E_REQUESTS_PER_S} requests/s)",
        [
            "offered/s",
            "workers",
            "fetch wait ms",
            "batch within s",
            "achieved/s",
            "applied/s",
            "events",
            "visible",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "POST p50 ms",
            "POST p99 ms",
            "batch ms",
            "batch records",
            "answer->row p50 ms",
            "answer->row p99 ms",
            "poll ms",
            "load 1m",
            "ingest cpu/wait",
            "workers cpu/wait",
            "failures",
        ],
        [
            [
                r["offered_events_per_s"],
                r["workers"],
                r["consumer_fetch_max_wait_ms"],
                r["processor_batch_within_s"],
                r["achieved_events_per_s"],
                r["applied_events_per_s"],
                r["events"],
                r["visible"],
                r["e2e_ms"]["p50_ms"],
                r["e2e_ms"]["p95_ms"],
                r["e2e_ms"]["p99_ms"],
                r["e2e_ms"]["max_ms"],
                r["post_ms"]["p50_ms"],
                r["post_ms"]["p99_ms"],
                r["mean_batch_ms"],
                r["mean_batch_records"],
                r["after_answer_ms"]["p50_ms"],
                r["after_answer_ms"]["p99_ms"],
                r["poll_period_ms"],
                r["load_avg_1m"],
                _cpu(r["cpu"], "ingest"),
                _cpu(r["cpu"], "workers"),
                r["failure_count"],
            ]
            for r in runs
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    count = sub.add_parser("faust-count", help="(internal) the trivial Faust agent")
    count.add_argument("--expected", type=int, required=True)
    count.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--records", type=int, default=None, help="attempts per throughput run")
    parser.add_argument("--e2e-seconds", type=float, default=None)
    parser.add_argument("--profile-seconds", type=float, default=None)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--e2e-only", action="store_true", help="only phase 4 (no replay)")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=list(E2E_RATES),
        help="offered events/s of the e2e runs, comma-separated",
    )
    parser.add_argument(
        "--configs",
        type=lambda text: [E2EConfig.parse(c) for c in text.split(",")],
        default=[E2EConfig(None, None, 1)],
        help="e2e configurations FETCH_MS:WITHIN_S[:WORKERS], comma-separated, '-' for the "
        "default (e.g. 1500:0.2,-:-,-:-:2); more than one only with --e2e-only",
    )
    args = parser.parse_args(argv)
    if args.command == "faust-count":
        faust_count(args.expected, args.out)
        return
    args.records = args.records or (10_000 if args.quick else 60_000)
    args.e2e_seconds = args.e2e_seconds or (6.0 if args.quick else 20.0)
    args.profile_seconds = args.profile_seconds or (3.0 if args.quick else 10.0)
    results = asyncio.run(benchmark(args))
    report(results)
    path = write_results("pipeline", results)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
