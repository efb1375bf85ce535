"""Shared pieces of the processor integration tests.

* real attempts from a 3-line knowledge-tracing file (n / skill ids / 0-1 flags),
  turned into AttemptEvent records keyed by learner;
* the expected skill_mastery rows: a plain replay of scheduler.bkt over the same
  sequences (the oracle the processor must match exactly);
* a worker subprocess (``python -m processors <name>``) that is always killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from learnstream.events.v1 import attempt_pb2, envelope_pb2
from learnstream.kafka import consumer_config, learner_key, producer_config
from learnstream.settings import REPO_ROOT, Settings
from processors.bkt_chain import clamp_probability
from scheduler.bkt import DEFAULT_PARAMS, update

TENANT = "tenant-a"
DATASET = Path("assistments2009_dkvmn") / "assist2009_updated_train.csv"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """One attempt to produce, and what the oracle needs of it."""

    event_id: str
    tenant_id: str
    user_id: str
    skill_ids: tuple[str, ...]
    correct: bool
    occurred_at: datetime
    score: float | None = None

    def key(self) -> bytes:
        return learner_key(self.tenant_id, self.user_id)

    def value(self) -> bytes:
        envelope = envelope_pb2.Envelope(
            event_id=self.event_id, tenant_id=self.tenant_id, user_id=self.user_id
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        event = attempt_pb2.AttemptEvent(
            envelope=envelope, item_id="item", skill_ids=self.skill_ids, correct=self.correct
        )
        if self.score is not None:
            event.score = self.score
        return event.SerializeToString()


def read_attempts(
    path: Path, *, students: int, limit: int, first_student: int = 0
) -> list[AttemptSpec]:
    """Up to ``limit`` real attempts of ``students`` learners of a 3-line file.

    Learners interleave as they would live (attempt i of each, then i + 1), so one
    batch holds several consecutive attempts of the same learner.
    """
    lines = path.read_text().split()
    answers: list[list[tuple[str, bool]]] = []
    for start in range(3 * first_student, len(lines) - 2, 3):
        if len(answers) == students:
            break
        skills, flags = lines[start + 1].split(","), lines[start + 2].split(",")
        answers.append([(s, f == "1") for s, f in zip(skills, flags, strict=True)])
    specs: list[AttemptSpec] = []
    step = 0
    while len(specs) < limit and any(step < len(a) for a in answers):
        for number, learner in enumerate(answers):
            if step < len(learner) and len(specs) < limit:
                skill, correct = learner[step]
                specs.append(
                    AttemptSpec(
                        event_id=str(uuid.uuid4()),
                        tenant_id=TENANT,
                        user_id=f"student-{first_student + number}",
                        skill_ids=(skill,),
                        correct=correct,
                        occurred_at=T0 + timedelta(seconds=len(specs)),
                    )
                )
        step += 1
    return specs


MasteryRow = tuple[float, int, int, str, datetime]


def expected_mastery(specs: Sequence[AttemptSpec]) -> dict[tuple[str, str, str], MasteryRow]:
    """skill_mastery as a plain replay of scheduler.bkt gives it (clamped to [0, 1])."""
    rows: dict[tuple[str, str, str], MasteryRow] = {}
    for spec in specs:
        score = spec.score if spec.score is not None else (1.0 if spec.correct else 0.0)
        for skill in dict.fromkeys(spec.skill_ids):
            key = (spec.tenant_id, spec.user_id, skill)
            p, attempts, correct, _, _ = rows.get(key, (DEFAULT_PARAMS.prior, 0, 0, "", T0))
            rows[key] = (
                clamp_probability(update(p, score, DEFAULT_PARAMS)),
                attempts + 1,
                correct + int(spec.correct),
                spec.event_id,
                spec.occurred_at,
            )
    return rows


async def stored_mastery(pool: asyncpg.Pool) -> dict[tuple[str, str, str], MasteryRow]:
    """Every skill_mastery row, in the shape of expected_mastery."""
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, skill_id, p_mastery, attempts, correct, last_event_id, "
        "last_attempt_at FROM skill_mastery"
    )
    return {
        (r["tenant_id"], r["user_id"], r["skill_id"]): (
            r["p_mastery"],
            r["attempts"],
            r["correct"],
            str(r["last_event_id"]),
            r["last_attempt_at"],
        )
        for r in rows
    }


def produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    *,
    chunk: int = 0,
    pause_s: float = 0.0,
) -> dict[int, int]:
    """Produce ``(key, value)`` records in order; returns partition -> last offset + 1.

    With ``chunk``, pauses ``pause_s`` after every ``chunk`` records (a live stream).
    """
    producer = Producer(producer_config(settings))
    ends: dict[int, int] = {}
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            partition, offset = message.partition(), message.offset()
            ends[partition] = max(ends.get(partition, 0), offset + 1)

    for number, (key, value) in enumerate(records, start=1):
        if chunk and number % chunk == 0:
            producer.flush(10)
            time.sleep(pause_s)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0, "records still unsent after 30 s"
    assert not errors, errors[:3]
    return ends


def consume_all(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    timeout_s: float,
) -> list[Any]:
    """Read ``topic`` from the beginning until ``until(messages)`` holds or time runs out.

    (Tansu's high watermark is wrong, so "the end of the topic" cannot be asked.)
    Partitions are assigned, not subscribed: no group join to wait for.
    """
    consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)]
    )
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(messages) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


async def offsets_reached(pool: asyncpg.Pool, group: str, topic: str, ends: dict[int, int]) -> bool:
    """True once every partition's stored next offset reached ``ends``."""
    rows = await pool.fetch(
        "SELECT partition, next_offset FROM processor_offsets WHERE consumer_group = $1 "
        "AND topic = $2",
        group,
        topic,
    )
    stored = {r["partition"]: r["next_offset"] for r in rows}
    return all(stored.get(p, 0) >= end for p, end in ends.items())


async def applied_count(pool: asyncpg.Pool, group: str, topic: str) -> int:
    """Records consumed so far (sum of stored next offsets)."""
    total = await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM processor_offsets "
        "WHERE consumer_group = $1 AND topic = $2",
        group,
        topic,
    )
    return int(total)


async def partitions_advanced_since(
    pool: asyncpg.Pool, group: str, topic: str, since: datetime, partitions: int
) -> bool:
    """True once every one of ``partitions`` stored a new offset after ``since``."""
    advanced = await pool.fetchval(
        "SELECT count(*) FROM processor_offsets WHERE consumer_group = $1 AND topic = $2 "
        "AND updated_at > $3",
        group,
        topic,
        since,
    )
    return int(advanced) >= partitions


def worker_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that gives a subprocess exactly ``settings`` (plus overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNSTREAM_")}
    values = {**settings.model_dump(), **overrides}
    for name, value in values.items():
        if value is None or hasattr(value, "get_secret_value"):
            continue
        env[f"LEARNSTREAM_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


class WorkerProcess:
    """``python -m processors <name>`` as a child process, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- start #{self.starts}\n".encode())
            log_file.flush()
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors", self.name],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 30.0) -> int | None:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout_s``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def running_worker(name: str, env: dict[str, str], log_path: Path) -> Iterator[WorkerProcess]:
    """A started worker that is SIGKILLed, whatever happens, when the block ends."""
    worker = WorkerProcess(name, env, log_path)
    worker.start()
    try:
        yield worker
    finally:
        worker.kill(signal.SIGKILL)


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout_s: float,
    worker: WorkerProcess | None = None,
    poll_s: float = 0.02,
) -> float:
    """Poll ``condition`` until true; fail with the worker's log if it dies or time runs out.

    Returns time.monotonic() when the condition was first seen true.
    """
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if worker is not None and not worker.alive():
            raise AssertionError(
                f"worker exited ({worker.kill()}) while waiting for {what}:\n{worker.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = worker.log_tail() if worker is not None else ""
            raise AssertionError(f"no {what} after {timeout_s} s:\n{tail}")
        await asyncio.sleep(poll_s)
    return time.monotonic()


class TcpProxy:
    """A loopback TCP relay to PostgreSQL that a test can stop and start (a database outage)."""

    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
