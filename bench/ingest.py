"""Ingest throughput, latency and CPU per event over HTTP, next to the plain forwarder
and the raw producer on the same broker.

Run: ``.venv/bin/python -m bench.ingest [--quick] [--duration S] [--concurrency C]
[--workers 1,2] [--batches 1,10,100,1000] [--ingest-tree NAME=PATH] [--no-forwarder]``.
Prints a table and writes ``bench/results/ingest.json``.

What runs (all on loopback, all of its own, stopped at the end):

* a Tansu broker on a free port, a database and Redis namespace of this run;
* the plain forwarder (``python -m bench._forwarder``): the simplest correct HTTP →
  Kafka path on the same uvicorn and producer, without authentication, validation or
  deduplication; ingest's baseline;
* ``python -m ingest`` with an API key of tenant ``bench``, once per ``--workers`` count
  (``ingest_workers``: uvicorn worker processes on one port; default 1 then 2), and
  once per ``--ingest-tree`` (the ingest of another checkout, e.g. the commit before a
  change, for a before/after figure from the same run);
* the raw baseline: confluent-kafka with ``learnstream.kafka.producer_config`` (idempotent,
  acks=all, what ingest itself uses) producing the same records (same value bytes, key and
  headers as ingest publishes) to the same topic, as fast as it takes them, for a bounded
  time. Measured before and after the HTTP runs; the ratio uses their mean;
* for each batch size: a SEPARATE load process (``python -m bench.ingest load ...``,
  async httpx, ``--concurrency`` requests in flight) posts protobuf batches of new
  events for ``--duration`` seconds after a warm-up. Events/s counts events answered
  ACCEPTED; latency is per request (POST to answer).

CPU use of the service, the broker and the load process over each run is reported,
because on a 2-core machine events/s is bounded by who gets a core. **CPU µs per
event** (the service's CPU time, every thread, over the measured window ÷ the events
answered ACCEPTED in it) is the figure a shared box distorts least; "CPU eff. vs fwd"
is the forwarder's CPU per event ÷ the service's at the same batch size. py-spy
samples each one-worker service at batches of 100 and 1,000
(``bench/results/ingest.<service>.b<batch>.pyspy.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    py_spy_binary,
    share_under,
    summarize_profile,
    write_results,
)
from infra.services import free_port
from ingest.batch import build_record
from ingest.validation import stamp_event
from learnstream.events.v1 import attempt_pb2, envelope_pb2, ingest_pb2
from learnstream.kafka import Stream, producer_config
from learnstream.settings import REPO_ROOT, Settings

TENANT = "bench"
BATCH_SIZES = (1, 10, 100, 1000)
PROFILED_BATCHES = (100, 1000)
LEARNERS = 1000
# Fixed-width placeholders: replaced in the serialized bytes, so length prefixes stay valid.
_ID_PLACEHOLDER = "ffffffff-ffff-4fff-bfff-ffffffffffff"
_USER_PLACEHOLDER = "bench-user-@@@@@@"
# Lines the load process prints when its measured window starts and ends.
WINDOW_START = "window-start"
WINDOW_END = "window-end"
# Requests each sender posts in the measured phase at least, however long they take.
MIN_REQUESTS_PER_SENDER = 3


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
    """Post batches of ``batch`` new events with ``concurrency`` in flight; the figures.

    Two phases, each drained (every request answered) before the next line is printed:
    a warm-up of ``warmup_s`` (connections, caches, the producer's first batches), then
    :data:`WINDOW_START`, the measured phase of ``duration_s`` (each sender posts at
    least :data:`MIN_REQUESTS_PER_SENDER` times, so a starved server still yields
    figures), then :data:`WINDOW_END`. The server's CPU between the two lines is
    exactly the cost of the measured requests (plus its idle background).
    """
    factory = BodyFactory(datetime.now(UTC) - timedelta(minutes=1))
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/x-protobuf",
        "Accept": "application/x-protobuf",
    }
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    counted = {"accepted": 0, "requests": 0, "other": 0}

    async def sender(client: httpx.AsyncClient, until: float, *, measured: bool) -> None:
        posted = 0
        while time.perf_counter() < until or (measured and posted < MIN_REQUESTS_PER_SENDER):
            body = factory.body(batch)
            sent_at = time.perf_counter()
            answer = await client.post(url, content=body, headers=headers)
            done_at = time.perf_counter()
            posted += 1
            statuses[str(answer.status_code)] += 1
            if not measured:
                continue
            counted["requests"] += 1
            latencies.append((done_at - sent_at) * 1000)
            if answer.status_code == 200:
                result = ingest_pb2.IngestResponse.FromString(answer.content)
                counted["accepted"] += result.accepted
                counted["other"] += len(result.results) - result.accepted

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        until = time.perf_counter() + warmup_s
        await asyncio.gather(*(sender(client, until, measured=False) for _ in range(concurrency)))
        print(WINDOW_START, flush=True)  # the parent meters CPU use between the two lines
        started = time.perf_counter()
        until = started + duration_s
        await asyncio.gather(*(sender(client, until, measured=True) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        print(WINDOW_END, flush=True)
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


def start_busy_profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` with ``--idle``: here py-spy files most samples of a running
    event loop as idle (only the poll thread's came through), so every sample is kept
    and :func:`event_loop_busy` drops the waiting ones afterwards."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            *(str(py_spy_binary()), "record", "--pid", str(pid), "--idle", "--nonblocking"),
            *("--duration", str(max(1, round(seconds))), "--rate", "100", "--format", "raw"),
            *("--output", str(output)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # At the default priority even when the benchmark runs under nice: a starved
        # sampler took 4 samples in 7 s on the loaded box (lowering needs root; else
        # it keeps the inherited priority).
        preexec_fn=_default_priority,
    )


def _default_priority() -> None:
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def event_loop_busy(raw: Path) -> Path:
    """The samples of ``raw`` where the main thread (the event loop) ran Python, next to
    it as ``*.busy.txt``: not other threads (the producer's poll thread, the loop's
    executor) and not ``Runner.run`` as the innermost frame (uvloop waiting in C)."""
    kept = []
    for line in raw.read_text().splitlines():
        stack = line.rpartition(" ")[0]
        if stack.startswith("Thread._bootstrap") or stack.rsplit(";", 1)[-1].startswith(
            "Runner.run "
        ):
            continue
        kept.append(line)
    busy = raw.with_name(raw.name.replace(".pyspy.txt", ".busy.pyspy.txt"))
    busy.write_text("\n".join(kept) + "\n")
    return busy


def profile_summary(raw: Path, batch: int) -> dict[str, Any]:
    """The top functions of a py-spy profile's event-loop-busy samples, for the results."""
    path = event_loop_busy(raw)
    samples, lines = summarize_profile(path)
    steps = share_under(path, PROFILE_STEPS.values())
    return {
        "batch": batch,
        "file": str(raw),
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
    args: list[str],
    groups: dict[str, list[int]],
    timeout_s: float,
    on_window_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the load process; meter ``groups`` (and the loader) over its measured window;
    ``on_window_start()`` is called as the window opens (the load process takes seconds
    to start on a loaded box: a profiler started with it would miss the window)."""
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
    window = (0.0, 0.0)
    lines = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.strip() == WINDOW_START:
                meter = CpuMeter(groups)
                if on_window_start is not None:
                    on_window_start()
                window = (time.perf_counter(), 0.0)
            elif line.strip() == WINDOW_END and meter is not None:
                shares = meter.read()
                window = (window[0], time.perf_counter())
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
    # CPU seconds of the service (every thread) over the window, per event it answered
    # ACCEPTED in it: the per-core cost, which a shared box does not distort as
    # much as events/s.
    cpu_s = shares.get("ingest", {}).get("cpu", float("nan")) * (window[1] - window[0])
    answered = result["events_accepted"]
    result["cpu_us_per_event"] = cpu_s / answered * 1e6 if answered else float("nan")
    return result


@dataclass(frozen=True)
class Service:
    """One HTTP service under the load: ingest (of this or another checkout) or the
    plain forwarder (bench/_forwarder.py)."""

    name: str  # "forwarder", "ingest", or a --ingest-tree name
    module: str  # what ``python -m`` runs
    workers: int = 1
    tree: Path | None = None  # another checkout whose ingest runs (None: this one)

    @property
    def is_ingest(self) -> bool:
        return self.module == "ingest"

    @property
    def profiled(self) -> bool:
        """py-spy samples this one (the one-worker forwarder and ingest of this tree)."""
        return self.workers == 1 and self.tree is None


def start_service(env: BenchEnvironment, service: Service, settings: Settings) -> int:
    """Start ``service``; its PID (stopped with the run: a PID file in the run dir)."""
    if service.tree is None:
        return env.start(service.name, [service.module], settings)
    log_path = settings.run_dir / f"{service.name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", service.module],
            cwd=service.tree,
            env={**os.environ, **settings.as_env(), "PYTHONPATH": str(service.tree)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (settings.run_dir / f"{service.name}.pid").write_text(str(process.pid))
    return process.pid


@dataclass(frozen=True)
class Running:
    """A started service: where it listens and which processes are metered as it."""

    service: Service
    pid: int
    url: str
    metrics_url: str
    groups: dict[str, list[int]]


async def start_all(env: BenchEnvironment, services: list[Service]) -> list[Running]:
    """Start every service at once, each on ports of its own, so that the load can
    alternate between them batch size by batch size (a drifting load on the shared box
    then hits all of them alike, not the ones measured last)."""
    running = []
    for service in services:
        settings = env.settings.model_copy(
            update={
                "ingest_workers": service.workers,
                "ingest_port": free_port(),
                # Not the default: it may be taken by another ingest on the box.
                "ingest_metrics_port": free_port(),
            }
        )
        pid = start_service(env, service, settings)
        await env.wait_ready(f"http://127.0.0.1:{settings.ingest_port}/readyz", service.name)
        await asyncio.sleep(1.0 if service.workers > 1 else 0.0)  # every worker up
        running.append(
            Running(
                service,
                pid,
                f"http://127.0.0.1:{settings.ingest_port}/v1/events",
                f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics",
                {
                    "ingest": process_tree(pid),
                    "broker": [env.broker.pid],
                    "redis": pids_named("redis-server"),
                },
            )
        )
    return running


async def run_batches(
    env: BenchEnvironment, api_key: str, args: argparse.Namespace, services: list[Service]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every batch size against every service, alternating; the runs and py-spy profiles."""
    runs = []
    profiles = []
    try:
        running = await start_all(env, services)
        for batch in args.batches:
            for one in running:
                result, profile = await measure(one, api_key, args, batch)
                runs.append(result)
                if profile is not None:
                    profiles.append(profile)
    finally:
        for service in services:
            env.stop(service.name)
    return runs, profiles


async def measure(
    one: Running, api_key: str, args: argparse.Namespace, batch: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One load run of ``batch`` against ``one`` (py-spy alongside where it is profiled)."""
    service = one.service
    profilers: list[subprocess.Popen[bytes]] = []
    profile_path = RESULTS_DIR / f"ingest.{service.name}.b{batch}.pyspy.txt"
    profile_path.unlink(missing_ok=True)

    def start_profiler() -> None:
        if batch in PROFILED_BATCHES and service.profiled and args.profile:
            profilers.append(start_busy_profile(one.pid, args.duration, profile_path))

    async with httpx.AsyncClient(timeout=10.0) as scraper:
        before = await publish_seconds(scraper, one.metrics_url) if service.is_ingest else (0, 0)
        command = load_args(one.url, api_key, args, batch)
        result = await asyncio.to_thread(
            run_load_child, command, one.groups, args.duration + 120, start_profiler
        )
        after = await publish_seconds(scraper, one.metrics_url) if service.is_ingest else (0, 0)
    publishes = after[1] - before[1]
    result["mean_publish_ms"] = (
        (after[0] - before[0]) / publishes * 1000 if publishes else float("nan")
    )
    result["service"] = service.name
    result["workers"] = service.workers
    print(
        f"{service.name} x{service.workers}, batch {batch:>5}: "
        f"{result['events_per_s']:,.0f} events/s, "
        f"{result['cpu_us_per_event']:,.1f} CPU us/event, "
        f"p99 {result['latency_ms']['p99_ms']:.1f} ms",
        file=sys.stderr,
    )
    profile = None
    for profiler in profilers:
        profiler.wait(timeout=args.duration + 60)
        if profile_path.exists():
            profile = {"service": service.name, **profile_summary(profile_path, batch)}
    return result, profile


def load_args(url: str, api_key: str, args: argparse.Namespace, batch: int) -> list[str]:
    """The command line of the load process (``python -m`` arguments)."""
    return [
        *("bench.ingest", "load", "--url", url, "--api-key", api_key),
        *("--batch", str(batch), "--duration", str(args.duration)),
        *("--concurrency", str(args.concurrency), "--warmup", str(args.warmup)),
    ]


def services_of(args: argparse.Namespace) -> list[Service]:
    """What runs, in order: the forwarder, ingest per workers count, other checkouts."""
    chosen = [Service("forwarder", "bench._forwarder")] if args.forwarder else []
    chosen += [Service("ingest" if n == 1 else f"ingest-{n}w", "ingest", n) for n in args.workers]
    for spec in args.ingest_tree:
        name, _, path = spec.partition("=")
        chosen.append(Service(name, "ingest", 1, Path(path).resolve()))
    return chosen


def add_ratios(runs: list[dict[str, Any]], raw_rate: float) -> None:
    """Per run: × raw (events/s), and against the forwarder's run of the same batch
    size: × forwarder (events/s) and efficiency (forwarder CPU per event ÷ this one's)."""
    forwarder = {r["batch"]: r for r in runs if r["service"] == "forwarder"}
    for run in runs:
        run["ratio_to_raw"] = run["events_per_s"] / raw_rate
        base = forwarder.get(run["batch"])
        if base is not None and run["events_per_s"] and run["cpu_us_per_event"]:
            run["ratio_to_forwarder"] = run["events_per_s"] / base["events_per_s"]
            run["cpu_efficiency_vs_forwarder"] = base["cpu_us_per_event"] / run["cpu_us_per_event"]


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of this benchmark; see the module docstring."""
    async with bench_environment("ingest") as env:
        settings = env.settings
        api_key = await env.api_key(TENANT)
        raw_before = measure_raw(env, args.raw_seconds)
        print(f"raw producer: {raw_before['events_per_s']:,.0f} records/s", file=sys.stderr)
        single_ack = await asyncio.to_thread(ack_latency, settings)

        runs, profiles = await run_batches(env, api_key, args, services_of(args))
        raw_after = measure_raw(env, args.raw_seconds)
        print(f"raw producer: {raw_after['events_per_s']:,.0f} records/s", file=sys.stderr)

    raw_rate = (raw_before["events_per_s"] + raw_after["events_per_s"]) / 2
    add_ratios(runs, raw_rate)
    return {
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "services": [s.name for s in services_of(args)],
            "raw_seconds": args.raw_seconds,
            "learners": LEARNERS,
            "topic_partitions": settings.topic_partitions,
        },
        "raw_producer": {"before": raw_before, "after": raw_after, "mean_events_per_s": raw_rate},
        "single_record_ack_ms": single_ack,
        "http": runs,
        "target": "ingest >= 0.7 x the forwarder's CPU efficiency at batches of 100 and 1,000",
        "profiles": profiles,
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
            *("service", "workers", "batch", "events/s", "x raw", "x fwd", "CPU us/event"),
            *("CPU eff. vs fwd", "p50 ms", "p99 ms", "publish ms", "server cpu/wait"),
            *("broker cpu/wait", "redis cpu", "loader cpu/wait", "non-200"),
        ],
        [
            [
                r["service"],
                r.get("workers", 1),
                r["batch"],
                r["events_per_s"],
                f"{r['ratio_to_raw']:.3f}",
                f"{r['ratio_to_forwarder']:.2f}" if "ratio_to_forwarder" in r else "-",
                r["cpu_us_per_event"],
                f"{r['cpu_efficiency_vs_forwarder']:.2f}"
                if "cpu_efficiency_vs_forwarder" in r
                else "-",
                r["latency_ms"]["p50_ms"],
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
    for profile in results.get("profiles", []):
        where = (
            f"{profile['service']}, batches of {profile['batch']} ({profile['samples']} samples)"
        )
        print_table(
            f"py-spy, {where}",
            ["self", "total", "function"],
            [
                [f"{p['self']:.1%}", f"{p['total']:.1%}", p["function"]]
                for p in profile["top_self"][:10]
            ],
        )
        print_table(
            f"py-spy, {where}: innermost frame by library; our request steps, inclusive",
            ["share", "library or step"],
            [
                *([f"{v:.1%}", k] for k, v in profile["by_library"].items()),
                *([f"{v:.1%}", k] for k, v in profile["steps_inclusive"].items()),
            ],
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
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the py-spy profiles"
    )
    parser.add_argument(
        "--no-forwarder", dest="forwarder", action="store_false", help="skip the forwarder"
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated ingest_workers counts to run, e.g. 1,2 (default) or 1",
    )
    parser.add_argument(
        "--ingest-tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run the ingest of another checkout (e.g. before=/tmp/old), one worker",
    )
    parser.add_argument(
        "--batches", default=",".join(map(str, BATCH_SIZES)), help="comma-separated batch sizes"
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
    args.batches = [int(n) for n in str(args.batches).split(",")]
    args.workers = [int(n) for n in str(args.workers).split(",")]
    results = asyncio.run(benchmark(args))
    report(results)
    path = write_results("ingest", results)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
