"""What the service benchmarks share: an isolated environment, percentiles, tables, results.

:func:`bench_environment` gives one benchmark everything of its own on loopback: a
Tansu broker on a free port, a database ``learnstream_bench_<name>_<pid>`` (created,
migrated, dropped at the end), a topic namespace, a Redis key namespace (its keys
deleted at the end), free HTTP ports and a run directory for PID files and logs.
Whatever happens, every process started there (``infra.demo.start_process``) and the
broker are stopped on exit.

The runner ``python -m bench`` skips this module (it is not a benchmark).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from infra import demo, services
from learnstream import db
from learnstream.apikeys import create_api_key
from learnstream.kafka import ensure_topics, producer_config
from learnstream.redis import redis_client
from learnstream.settings import REPO_ROOT, Settings, get_settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# (key, value, headers) of one record to produce.
RawRecord = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max (and the sample count) of latencies in ms; NaN when empty."""
    if not values_ms:
        nan = float("nan")
        return {"count": 0, "p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "max_ms": nan}
    array = np.asarray(values_ms, dtype=float)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {
        "count": len(values_ms),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(array.max()),
    }


def machine() -> dict[str, Any]:
    """Where and when the figures were taken (the machine is shared: load matters)."""
    load1, load5, _ = os.getloadavg()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(load1, 2),
        "load_avg_5m": round(load5, 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_results(name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (with the machine description); returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout; floats get thousands separators."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(column), *(len(row[i]) for row in text_rows)) if text_rows else len(column)
        for i, column in enumerate(columns)
    ]
    print(f"\n{title}")
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    print("  ".join("-" * width for width in widths))
    for row in text_rows:
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))


@dataclass(frozen=True)
class BenchEnvironment:
    """The isolated services of one benchmark run."""

    settings: Settings
    broker: services.Broker

    def start(self, name: str, module_args: list[str], settings: Settings | None = None) -> int:
        """Start ``python -m <module_args>`` with ``settings``; stopped when the run ends."""
        chosen = settings or self.settings
        # start_process gives the child exactly `chosen` (Settings.as_env) and keeps the
        # PID file in chosen.run_dir, which must be this run's so cleanup finds it.
        assert chosen.run_dir == self.settings.run_dir, "children must share the run dir"
        return demo.start_process(chosen, name, module_args)

    def stop(self, name: str) -> bool:
        """Stop the process started as ``name``; True if it was running."""
        pid_file = self.settings.run_dir / f"{name}.pid"
        if not pid_file.exists():
            return False
        pid = int(pid_file.read_text().strip())
        pid_file.unlink()
        return services.stop_pid(pid)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of process ``name``'s log, for error messages."""
        path = self.settings.run_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def api_key(self, tenant_id: str) -> str:
        """A fresh ingest/read API key of ``tenant_id`` (plaintext)."""
        conn = await db.connect(self.settings)
        try:
            issued = await create_api_key(conn, tenant_id=tenant_id, app_name="bench")
        finally:
            await conn.close()
        return issued.plaintext

    async def wait_ready(self, url: str, name: str, timeout_s: float = 60.0) -> None:
        """Poll ``url`` until 200; fail with the log of process ``name``."""
        try:
            await demo.wait_ready(
                url, timeout_s=timeout_s, log_path=self.settings.run_dir / f"{name}.log"
            )
        except Exception as exc:
            raise RuntimeError(f"{name} not ready at {url}:\n{self.log_tail(name)}") from exc


def _bench_database_url(base: Settings, name: str) -> str:
    parts = urlsplit(base.database_url)
    return urlunsplit(parts._replace(path=f"/learnstream_bench_{name}_{os.getpid()}"))


@asynccontextmanager
async def bench_environment(name: str, **overrides: Any) -> AsyncIterator[BenchEnvironment]:
    """Broker, database, namespaces and ports of benchmark ``name``; all torn down on exit.

    ``overrides`` are Settings fields (e.g. ``topic_partitions=8``). PostgreSQL and
    Redis are the machine's (checked, started if installed and stopped); the broker
    is a new Tansu process on a free loopback port.
    """
    base = get_settings()
    run_dir = REPO_ROOT / ".run" / f"bench-{name}-{os.getpid()}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    settings = base.model_copy(
        update={
            "environment": "test",
            "kafka_bootstrap": f"127.0.0.1:{services.free_port()}",
            "kafka_topic_namespace": f"bench{os.getpid()}",
            "database_url": _bench_database_url(base, name),
            "redis_namespace": f"bench:{name}:{os.getpid()}",
            "run_dir": run_dir,
            "data_dir": run_dir / "data",
            "ingest_port": services.free_port(),
            "api_port": services.free_port(),
            "processor_web_port": 0,
            "consumer_session_timeout_s": 4.0,
            "consumer_heartbeat_interval_s": 0.5,
            "log_level": "WARNING",
            **overrides,
        }
    )
    services.ensure_postgres(settings)
    services.ensure_redis(settings)
    broker = services.start_broker(settings)
    try:
        await db.drop_database(settings)
        await services.prepare_storage(settings)
        await asyncio.to_thread(ensure_topics, settings)
        yield BenchEnvironment(settings=settings, broker=broker)
    finally:
        stopped = demo.stop_all(settings)  # every PID file in run_dir, the broker's too
        services.stop_broker(settings)
        try:
            await db.drop_database(settings)
        finally:
            await _delete_redis_keys(settings)
        print(f"[bench] stopped {', '.join(stopped) or 'nothing'}; logs in {run_dir}")


async def _delete_redis_keys(settings: Settings) -> None:
    # Ingest keeps a dedup key per accepted event for days; a benchmark's must not linger.
    redis = redis_client(settings)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{settings.redis_namespace}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class ProduceOutcome:
    """What :func:`produce_records` measured."""

    records: int
    seconds: float  # first produce() call to the last acknowledgement
    errors: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def produce_records(
    settings: Settings,
    topic: str,
    records: Iterable[RawRecord],
    *,
    max_seconds: float | None = None,
) -> ProduceOutcome:
    """Produce ``(key, value, headers)`` as fast as the idempotent acks=all producer takes them.

    The producer is ``learnstream.kafka.producer_config`` (what ingest uses). Stops
    early after ``max_seconds`` of producing; the time includes the final flush.
    """
    producer = Producer(producer_config(settings, delivery_timeout_ms=30_000))
    errors = 0

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        nonlocal errors
        if error is not None:
            errors += 1

    sent = 0
    started = time.perf_counter()
    for key, value, headers in records:
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        sent += 1
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    unsent = producer.flush(60)
    seconds = time.perf_counter() - started
    return ProduceOutcome(records=sent - unsent, seconds=seconds, errors=errors + unsent)


def run_json_child(args: list[str], *, timeout_s: float) -> dict[str, Any]:
    """Run ``python -m <args>`` to completion; its last stdout line is a JSON object."""
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-3000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def poll_until(
    condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.1
) -> float:
    """Await ``condition()`` (a coroutine function returning bool) until true; monotonic time."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s:.0f} s")
        await asyncio.sleep(interval_s)


def py_spy_binary() -> Path:
    """The py-spy executable of this virtualenv (dev extra)."""
    found = Path(sys.executable).parent / "py-spy"
    if found.exists():
        return found
    which = shutil.which("py-spy")
    if which is None:
        raise RuntimeError("py-spy is not installed; run `make setup` (dev extra)")
    return Path(which)


def start_profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample process ``pid`` with py-spy for ``seconds`` into ``output`` (collapsed stacks).

    ``--nonblocking`` reads the target's memory without pausing it, so the
    profile costs the profiled process nothing (a few samples may be torn).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(py_spy_binary()),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@dataclass(frozen=True)
class ProfileLine:
    """One function of a profile: share of samples where it runs, or is on the stack."""

    function: str  # "name (file)"
    self_share: float  # in [0, 1]: samples whose innermost frame is this function
    total_share: float  # in [0, 1]: samples with this function anywhere on the stack


def summarize_profile(path: Path, *, top: int = 15) -> tuple[int, list[ProfileLine]]:
    """The sample count and the ``top`` functions by self time of a py-spy raw profile.

    Lines are ``frame;frame;...;innermost count``; a frame is ``name (file:line)``.
    Lines are dropped so one function is one entry whatever line it was sampled on.
    """
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_strip_line(frame) for frame in stack.split(";")]
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + count
    ranked = sorted(self_counts, key=lambda f: self_counts[f], reverse=True)[:top]
    return samples, [
        ProfileLine(f, self_counts[f] / samples, total_counts[f] / samples) for f in ranked
    ]


def share_under(path: Path, needles: Iterable[str]) -> dict[str, float]:
    """For each needle, the share of samples (in [0, 1]) with a frame containing it."""
    wanted = list(needles)
    hits = dict.fromkeys(wanted, 0)
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        for needle in wanted:
            if needle in stack:
                hits[needle] += count
    return {needle: (hits[needle] / samples if samples else 0.0) for needle in wanted}


def _strip_line(frame: str) -> str:
    # "process (processors/base.py:210)" -> "process (processors/base.py)"
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short_path(file)})" if where else name


def _short_path(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(REPO_ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def sched_seconds(pids: Iterable[int]) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of every thread of ``pids``.

    From Linux ``/proc/<pid>/task/<tid>/schedstat``; the second figure tells a process
    that was starved of CPU (the machine is shared) from one that was idle.
    Threads that already exited are not counted.
    """
    on_cpu = waiting = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:
                continue
            on_cpu += int(fields[0])
            waiting += int(fields[1])
    return on_cpu / 1e9, waiting / 1e9


class CpuMeter:
    """CPU use of named groups of processes over a stretch of wall time.

    ``read()`` gives per group ``cpu``: cores used on average (1.0 = one core busy)
    and ``waiting``: average threads runnable but not running (CPU starvation).
    """

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self._groups = {name: list(pids) for name, pids in groups.items()}
        self._started = time.perf_counter()
        self._before = {pid: sched_seconds([pid]) for pids in self._groups.values() for pid in pids}

    def read(self) -> dict[str, dict[str, float]]:
        """Averages since the meter was made (processes that exited meanwhile count 0)."""
        wall = max(time.perf_counter() - self._started, 1e-9)
        shares = {}
        for name, pids in self._groups.items():
            on_cpu = waiting = 0.0
            for pid in pids:
                if not Path(f"/proc/{pid}").exists():
                    continue
                now_cpu, now_wait = sched_seconds([pid])
                # Threads that exited since take their counts with them: never below 0.
                on_cpu += max(now_cpu - self._before[pid][0], 0.0)
                waiting += max(now_wait - self._before[pid][1], 0.0)
            shares[name] = {"cpu": on_cpu / wall, "waiting": waiting / wall}
        return shares


def pids_named(command: str) -> list[int]:
    """PIDs whose command name is ``command`` (e.g. ``postgres``, ``redis-server``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def leaf_shares(path: Path, groups: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    """Share of samples (in [0, 1]) whose innermost frame's file starts with a group's prefix.

    E.g. ``{"asyncpg": ("asyncpg/",)}``: where the CPU actually was, by library; the
    samples no group claims are under ``"other"``.
    """
    hits = dict.fromkeys([*groups, "other"], 0)
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        leaf = stack.rsplit(";", 1)[-1]
        file = leaf.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
        file = _short_path(file)
        for name, prefixes in groups.items():
            if file.startswith(prefixes):
                hits[name] += count
                break
        else:
            hits["other"] += count
    return {name: (n / samples if samples else 0.0) for name, n in hits.items()}
