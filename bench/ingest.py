"""Ingest throughput and latency over HTTP, next to the raw producer on the same broker.

Run: ``.venv/bin/python -m bench.ingest [--quick] [--duration S] [--concurrency C]
[--workers 1,2]``.
Prints a table and writes ``bench/results/ingest.json``.

What runs (all on loopback, all of its own, stopped at the end):

* a Tansu broker on a free port, a database and Redis namespace of this run;
* ``python -m ingest`` with an API key of tenant ``bench``, once per ``--workers`` count
  (``ingest_workers``: uvicorn worker processes on one port; default 1 then 2);
* the raw baseline: confluent-kafka with ``learnstream.kafka.producer_config`` (idempotent,
  acks=all, what ingest itself uses) producing the same records (same value bytes, key and
  headers as ingest publishes) to the same topic, as fast as it takes them, for a bounded
  time. Measured before and after the HTTP runs; the ratio uses their mean;
* for each batch size 1, 10, 100 and 1,000: a SEPARATE load process
  (``python -m bench.ingest load ...``, async httpx, ``--concurrency`` requests in flight)
  posts protobuf batches of new events for ``--duration`` seconds after a warm-up second.
  Events/s counts events answered ACCEPTED; latency is per request (POST to answer).

CPU use of ingest, the broker and the load process over each run is reported, because
on a 2-core machine the figures are bounded by who gets a core. During the batch-100
run of one worker py-spy samples the ingest process (``bench/results/ingest.pyspy.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    RESULTS_DIR,
    BenchEnvironment,
    CpuMeter,
    RawRecord,
    bench_environment,
    leaf_shares,
    percentiles,
    pids_named,
    print_table,
    produce_records,
    share_under,
    start_profile,
    summarize_profile,
    write_results,
)
from ingest.batch import build_record
from ingest.validation import stamp_event
from learnstream.events.v1 import attempt_pb2, envelope_pb2, ingest_pb2
from learnstream.kafka import Stream, producer_config
from learnstream.settings import REPO_ROOT, Settings

TENANT = "bench"
BATCH_SIZES = (1, 10, 100, 1000)
PROFILED_BATCH = 100
LEARNERS = 1000
# Fixed-width placeholders: replaced in the serialized bytes, so length prefixes stay valid.
_ID_PLACEHOLDER = "ffffffff-ffff-4fff-bfff-ffffffffffff"
_USER_PLACEHOLDER = "bench-user-@@@@@@"
# Lines the load process prints when its measured window starts and ends.
WINDOW_START = "window-start"
WINDOW_END = "window-end"


def attempt_template(occurred_at: datetime) -> ingest_pb2.LearningEvent:
    """The attempt every load event is a copy of (placeholders for event id and user)."""
    envelope = envelope_pb2.Envelope(
        event_id=_ID_PLACEHOLDER, user_id=_USER_PLACEHOLDER, session_id="bench-session"
    )
    envelope.occurred_at.FromDatetime(occurred_at)
    envelope.source.app = "bench-ingest"
    envelope.source.platform = "bench"
    return ingest_pb2.LearningEvent(
        attempt=attempt_pb2.AttemptEvent(
            envelope=envelope,
            item_id="item-17",
            item_version=1,
            skill_ids=["skill-3"],
            correct=True,
            response_time_ms=4200,
            attempt_number=1,
            context=attempt_pb2.ATTEMPT_CONTEXT_PRACTICE,
        )
    )


class BodyFactory:
    """Serialized IngestRequest bodies of fresh events, built by byte substitution.

    Building protobuf messages per event would cost the load process more CPU than the
    server spends on them; substituting fixed-width ids into one serialized element
    costs about a microsecond per event and yields the same bytes.
    """

    def __init__(self, occurred_at: datetime, learners: int = LEARNERS) -> None:
        element = ingest_pb2.IngestRequest(events=[attempt_template(occurred_at)])
        raw = element.SerializeToString()
        id_at = raw.index(_ID_PLACEHOLDER.encode())
        user_at = raw.index(_USER_PLACEHOLDER.encode())
        assert id_at < user_at, "envelope.event_id (field 1) precedes user_id"
        self._head = raw[:id_at]
        self._middle = raw[id_at + len(_ID_PLACEHOLDER) : user_at]
        self._tail = raw[user_at + len(_USER_PLACEHOLDER) :]
        self._users = [f"bench-user-{n:06d}".encode() for n in range(learners)]
        self._next_user = 0

    def body(self, events: int) -> bytes:
        """An IngestRequest of ``events`` new attempts (random UUIDs, learners round-robin)."""
        parts = []
        for _ in range(events):
            user = self._users[self._next_user]
            self._next_user = (self._next_user + 1) % len(self._users)
            parts.append(self._head + str(uuid.uuid4()).encode() + self._middle + user + self._tail)
        return b"".join(parts)


def raw_records(settings: Settings, count: int) -> Iterator[RawRecord]:
    """``count`` records exactly as ingest publishes them (stamped AttemptEvents)."""
    templates: list[RawRecord] = []
    now = datetime.now(UTC)
    for n in range(LEARNERS):
        event = attempt_template(now - timedelta(minutes=1))
        event.attempt.envelope.event_id = str(uuid.uuid4())
        event.attempt.envelope.user_id = f"bench-user-{n:06d}"
        stamp_event(event, tenant_id=TENANT, received_at=now)
        record = build_record("attempt", event.attempt, settings)
        templates.append((record.key, record.value, list(record.headers)))
    for n in range(count):
        yield templates[n % LEARNERS]


# --- the load process ---------------------------------------------------------------


async def run_load(
    url: str, api_key: str, *, batch: int, duration_s: float, warmup_s: float, concurrency: int
) -> dict[str, Any]:
    """Post batches of ``batch`` new events with ``concurrency`` in flight; the figures."""
    factory = BodyFactory(datetime.now(UTC) - timedelta(minutes=1))
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/x-protobuf",
        "Accept": "application/x-protobuf",
    }
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    counted = {"accepted": 0, "requests": 0, "other": 0}
    started = time.perf_counter()
    window_start = started + warmup_s
    window_end = window_start + duration_s
    last_done = window_start

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal last_done
        while True:
            sent_at = time.perf_counter()
            if sent_at >= window_end:
                return
            body = factory.body(batch)
            answer = await client.post(url, content=body, headers=headers)
            done_at = time.perf_counter()
            statuses[str(answer.status_code)] += 1
            if sent_at < window_start:
                continue  # warm-up: connections, caches, the producer's first batches
            counted["requests"] += 1
            latencies.append((done_at - sent_at) * 1000)
            last_done = max(last_done, done_at)
            if answer.status_code == 200:
                result = ingest_pb2.IngestResponse.FromString(answer.content)
                counted["accepted"] += result.accepted
                counted["other"] += len(result.results) - result.accepted

    async def mark_window() -> None:
        # The parent meters CPU use between these two lines.
        await asyncio.sleep(max(window_start - time.perf_counter(), 0))
        print(WINDOW_START, flush=True)
        await asyncio.sleep(max(window_end - time.perf_counter(), 0))
        print(WINDOW_END, flush=True)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.gather(mark_window(), *(sender(client) for _ in range(concurrency)))
    seconds = max(last_done - window_start, 1e-9)
    return {
        "batch": batch,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": counted["requests"],
        "events_accepted": counted["accepted"],
        "events_not_accepted": counted["other"],
        "events_per_s": counted["accepted"] / seconds,
        "requests_per_s": counted["requests"] / seconds,
        "statuses": dict(statuses),
        "latency_ms": percentiles(latencies),
    }


# --- the benchmark --------------------------------------------------------------------


def ack_latency(settings: Settings, records: int = 200) -> dict[str, float]:
    """Produce one record and wait for its acknowledgement, ``records`` times: ms each.

    The floor under any ingest answer (ingest answers after the ack).
    """
    producer = Producer(producer_config(settings))
    topic = settings.topic(Stream.ATTEMPTS)
    latencies = []
    for key, value, headers in raw_records(settings, records):
        started = time.perf_counter()
        producer.produce(topic, key=key, value=value, headers=headers)
        producer.flush(10)
        latencies.append((time.perf_counter() - started) * 1000)
    return percentiles(latencies)


# Where ingest's CPU was, by the innermost frame's file (py-spy samples).
PROFILE_LEAVES = {
    "redis client (redis-py)": ("redis/",),
    "fastapi, starlette, uvicorn, pydantic": (
        "fastapi/",
        "starlette/",
        "uvicorn/",
        "pydantic",
        "anyio/",
        "h11/",
    ),
    "ingest + learnstream (ours)": ("ingest/", "learnstream/"),
    "asyncio, selectors, threading": (
        "asyncio/",
        "selectors.py",
        "threading.py",
        "socket.py",
        "queue.py",
    ),
}
# Our steps, inclusive (share of samples with the frame anywhere on the stack).
PROFILE_STEPS = {
    "decode body (decode_request)": "decode_request (ingest/codec.py",
    "validate, stamp, build record (_prepare)": "BatchIngestor._prepare (ingest/batch.py",
    "dedup claim (one Redis script call)": "DedupStore.claim (ingest/dedup.py",
    "dedup mark done (one Redis script call)": "DedupStore.mark_done (ingest/dedup.py",
    "publish (queue records)": "AsyncProducer.publish_batch (learnstream/kafka.py",
    "settle deliveries (await acks, mark done)": "BatchIngestor._settle (ingest/batch.py",
    "producer poll thread (delivery callbacks)": "_poll_forever (learnstream/kafka.py",
}


def profile_summary(path: Path, batch: int) -> dict[str, Any]:
    """The top functions of a py-spy profile, for the results file."""
    samples, lines = summarize_profile(path)
    steps = share_under(path, PROFILE_STEPS.values())
    return {
        "batch": batch,
        "file": str(path),
        "samples": samples,
        "by_library": leaf_shares(path, PROFILE_LEAVES),
        "steps_inclusive": {name: steps[needle] for name, needle in PROFILE_STEPS.items()},
        "top_self": [
            {"function": p.function, "self": p.self_share, "total": p.total_share} for p in lines
        ],
    }


async def publish_seconds(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """(sum, count) of ingest's publish-time histogram: seconds from produce to last ack."""
    text = (await client.get(url)).text
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "learnstream_ingest_publish_seconds":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total = sample.value
                elif sample.name.endswith("_count"):
                    count = sample.value
    return total, count


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes), by parent PID in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Field 4 of stat is the parent PID; the command (field 2) may hold spaces.
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found = [pid]
    for parent in found:
        found.extend(child for child, of in parents.items() if of == parent)
    return found


def measure_raw(env: BenchEnvironment, seconds: float) -> dict[str, Any]:
    """The raw producer's rate on the ingest topic of this run, for ``seconds``."""
    topic = env.settings.topic(Stream.ATTEMPTS)
    meter = CpuMeter({"broker": [env.broker.pid], "bench": [os.getpid()]})
    outcome = produce_records(
        env.settings, topic, raw_records(env.settings, 5_000_000), max_seconds=seconds
    )
    return {
        "records": outcome.records,
        "seconds": outcome.seconds,
        "errors": outcome.errors,
        "events_per_s": outcome.per_second,
        "cpu": meter.read(),
    }


def run_load_child(
    args: list[str], groups: dict[str, list[int]], timeout_s: float
) -> dict[str, Any]:
    """Run the load process; meter ``groups`` (and the loader) over its measured window."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    groups = {**groups, "loader": [process.pid]}
    meter: CpuMeter | None = None
    shares: dict[str, dict[str, float]] = {}
    lines = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.strip() == WINDOW_START:
                meter = CpuMeter(groups)
            elif line.strip() == WINDOW_END and meter is not None:
                shares = meter.read()
            elif line.strip():
                lines.append(line)
        code = process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
    if code != 0 or not lines:
        stderr = process.stderr.read() if process.stderr else ""
        raise RuntimeError(f"load process exited {code}:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cpu"] = shares
    return result


async def run_batches(
    env: BenchEnvironment, api_key: str, args: argparse.Namespace, workers: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every batch size against ``python -m ingest`` with ``workers`` processes."""
    settings = env.settings.model_copy(update={"ingest_workers": workers})
    ingest_pid = env.start("ingest", ["ingest"], settings)
    await env.wait_ready(f"http://127.0.0.1:{settings.ingest_port}/readyz", "ingest")
    await asyncio.sleep(1.0 if workers > 1 else 0.0)  # every worker up, not just the first
    url = f"http://127.0.0.1:{settings.ingest_port}/v1/events"
    metrics_url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"  # not public
    groups = {
        "ingest": process_tree(ingest_pid),
        "broker": [env.broker.pid],
        "redis": pids_named("redis-server"),
    }
    runs = []
    profile: dict[str, Any] | None = None
    try:
        async with httpx.AsyncClient(timeout=10.0) as scraper:
            for batch in args.batches:
                profiler = None
                profile_path = RESULTS_DIR / "ingest.pyspy.txt"
                if batch == PROFILED_BATCH and workers == 1 and not args.no_profile:
                    profiler = start_profile(
                        ingest_pid, args.duration + args.warmup + 1, profile_path
                    )
                published_before = await publish_seconds(scraper, metrics_url)
                result = await asyncio.to_thread(
                    run_load_child,
                    [
                        "bench.ingest",
                        "load",
                        "--url",
                        url,
                        "--api-key",
                        api_key,
                        "--batch",
                        str(batch),
                        "--duration",
                        str(args.duration),
                        "--concurrency",
                        str(args.concurrency),
                        "--warmup",
                        str(args.warmup),
                    ],
                    groups,
                    args.duration + 120,
                )
                published_after = await publish_seconds(scraper, metrics_url)
                publishes = published_after[1] - published_before[1]
                result["mean_publish_ms"] = (
                    (published_after[0] - published_before[0]) / publishes * 1000
                    if publishes
                    else float("nan")
                )
                result["workers"] = workers
                runs.append(result)
                print(
                    f"workers {workers}, batch {batch:>5}: {result['events_per_s']:,.0f} "
                    f"events/s, p99 {result['latency_ms']['p99_ms']:.1f} ms",
                    file=sys.stderr,
                )
                if profiler is not None:
                    profiler.wait(timeout=args.duration + 60)
                    if profile_path.exists():
                        profile = profile_summary(profile_path, batch)
    finally:
        env.stop("ingest")
    return runs, profile


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of this benchmark; see the module docstring."""
    async with bench_environment("ingest") as env:
        settings = env.settings
        api_key = await env.api_key(TENANT)
        raw_before = measure_raw(env, args.raw_seconds)
        print(f"raw producer: {raw_before['events_per_s']:,.0f} records/s", file=sys.stderr)
        single_ack = await asyncio.to_thread(ack_latency, settings)

        runs = []
        profile: dict[str, Any] | None = None
        for workers in args.workers:
            worker_runs, worker_profile = await run_batches(env, api_key, args, workers)
            runs.extend(worker_runs)
            profile = profile or worker_profile
        raw_after = measure_raw(env, args.raw_seconds)
        print(f"raw producer: {raw_after['events_per_s']:,.0f} records/s", file=sys.stderr)

    raw_rate = (raw_before["events_per_s"] + raw_after["events_per_s"]) / 2
    for run in runs:
        run["ratio_to_raw"] = run["events_per_s"] / raw_rate
    return {
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "raw_seconds": args.raw_seconds,
            "learners": LEARNERS,
            "topic_partitions": settings.topic_partitions,
        },
        "raw_producer": {"before": raw_before, "after": raw_after, "mean_events_per_s": raw_rate},
        "single_record_ack_ms": single_ack,
        "http": runs,
        "target": "batches of 100 >= 0.25 x raw, rising with batch size",
        "profile": profile,
    }


def cpu_cell(shares: dict[str, dict[str, float]], name: str) -> str:
    """``cores used / threads waiting for a core``, e.g. ``0.93/0.41``."""
    share = shares.get(name)
    return "-" if share is None else f"{share['cpu']:.2f}/{share['waiting']:.2f}"


def report(results: dict[str, Any]) -> None:
    """The table of figures."""
    raw = results["raw_producer"]
    print_table(
        "Raw confluent-kafka producer (idempotent, acks=all), same broker and topic",
        ["when", "records", "seconds", "records/s", "broker cpu/wait", "producer cpu/wait"],
        [
            [
                when,
                r["records"],
                r["seconds"],
                r["events_per_s"],
                cpu_cell(r["cpu"], "broker"),
                cpu_cell(r["cpu"], "bench"),
            ]
            for when, r in (("before", raw["before"]), ("after", raw["after"]))
        ],
    )
    ack = results["single_record_ack_ms"]
    print(
        f"\none record, produce to ack: p50 {ack['p50_ms']:.1f} ms, p99 {ack['p99_ms']:.1f} ms "
        f"({ack['count']} records)"
    )
    print_table(
        f"POST /v1/events, protobuf, {results['settings']['concurrency']} requests in flight",
        [
            "workers",
            "batch",
            "events/s",
            "x raw",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "publish ms",
            "ingest cpu/wait",
            "broker cpu/wait",
            "redis cpu",
            "loader cpu/wait",
            "non-200",
        ],
        [
            [
                r.get("workers", 1),
                r["batch"],
                r["events_per_s"],
                f"{r['ratio_to_raw']:.3f}",
                r["requests_per_s"],
                r["latency_ms"]["p50_ms"],
                r["latency_ms"]["p95_ms"],
                r["latency_ms"]["p99_ms"],
                r["mean_publish_ms"],
                cpu_cell(r["cpu"], "ingest"),
                cpu_cell(r["cpu"], "broker"),
                f"{r['cpu'].get('redis', {}).get('cpu', float('nan')):.2f}",
                cpu_cell(r["cpu"], "loader"),
                sum(n for status, n in r["statuses"].items() if status != "200"),
            ]
            for r in results["http"]
        ],
    )
    profile = results.get("profile")
    if profile:
        print_table(
            f"py-spy, ingest process, batches of {profile['batch']} ({profile['samples']} samples)",
            ["self", "total", "function"],
            [
                [f"{p['self']:.1%}", f"{p['total']:.1%}", p["function"]]
                for p in profile["top_self"][:10]
            ],
        )
        print_table(
            "py-spy, ingest: where the CPU was (innermost frame), by library",
            ["share", "library"],
            [[f"{share:.1%}", name] for name, share in profile["by_library"].items()],
        )
        print_table(
            "py-spy, ingest: request steps, inclusive",
            ["share", "step"],
            [[f"{share:.1%}", name] for name, share in profile["steps_inclusive"].items()],
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load", help="(internal) the load process: post for a bounded time")
    load.add_argument("--url", required=True)
    load.add_argument("--api-key", required=True)
    load.add_argument("--batch", type=int, required=True)
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--warmup", type=float, default=1.0)
    load.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="short runs (3 s each)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per batch size")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--raw-seconds", type=float, default=None)
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated ingest_workers counts to run, e.g. 1,2 (default) or 1",
    )
    args = parser.parse_args(argv)
    if args.command == "load":
        result = asyncio.run(
            run_load(
                args.url,
                args.api_key,
                batch=args.batch,
                duration_s=args.duration,
                warmup_s=args.warmup,
                concurrency=args.concurrency,
            )
        )
        print(json.dumps(result))
        return
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.raw_seconds = args.raw_seconds or (2.0 if args.quick else 4.0)
    args.batches = BATCH_SIZES
    args.workers = [int(n) for n in str(args.workers).split(",")]
    results = asyncio.run(benchmark(args))
    report(results)
    path = write_results("ingest", results)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
