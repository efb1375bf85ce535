"""Pieces of the fault tests: a broker behind a cuttable proxy, and clients that retry.

* :func:`proxied_broker`: a Tansu broker of the test's own that listens on one port
  and advertises another, where a :class:`TcpProxy` relays to it. Cutting the proxy
  makes the broker unreachable to every client (a network partition) while it keeps
  its records, so "everything exactly once" can be checked across the outage
  (a restarted Tansu would have lost them: memory storage).
* :func:`cut_repeatedly`: cuts and restores the proxy again and again at random
  moments (a flapping network).
* :func:`send_until_done`: a client that posts its batches in order and retries
  503s (after Retry-After) and RETRY_LATER events until every event is ACCEPTED or
  DUPLICATE, recording what each answer claimed.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra import services
from learnstream.events.v1 import ingest_pb2
from learnstream.settings import Settings
from tests.integration.ingest.support import parse_response, protobuf_body
from tests.integration.processors.support import TcpProxy

STATUS = ingest_pb2.EventStatus


def start_tansu(
    settings: Settings, listen_port: int, advertised_port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """Tansu listening on ``listen_port`` and advertising ``advertised_port`` (loopback)."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [
                str(services.tansu_binary(settings)),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{listen_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@asynccontextmanager
async def proxied_broker(
    settings: Settings, log_path: Path
) -> AsyncIterator[tuple[Settings, TcpProxy]]:
    """Settings whose bootstrap is a proxy in front of a new Tansu; the proxy (started).

    Clients only ever see the proxy's port: Tansu advertises it in its metadata.
    The broker is killed at the end.
    """
    listen_port, proxy_port = services.free_port(), services.free_port()
    process = start_tansu(settings, listen_port, proxy_port, log_path)
    proxy = TcpProxy("127.0.0.1", listen_port, proxy_port)
    try:
        await asyncio.to_thread(
            services.wait_for_port, "127.0.0.1", listen_port, timeout_s=15, what="Tansu"
        )
        await proxy.start()
        yield settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{proxy_port}"}), proxy
    finally:
        await proxy.stop()
        process.kill()
        process.wait(timeout=10)


async def cut_repeatedly(
    proxy: TcpProxy,
    rng: random.Random,
    *,
    cuts: int,
    up_s: tuple[float, float],
    down_s: tuple[float, float],
) -> list[tuple[float, float]]:
    """Cut ``proxy`` ``cuts`` times: up for ``rng.uniform(*up_s)`` s, then down for
    ``rng.uniform(*down_s)`` s; restored at the end. The (up, down) seconds of each cut."""
    done = []
    for _ in range(cuts):
        up, down = rng.uniform(*up_s), rng.uniform(*down_s)
        await asyncio.sleep(up)
        await proxy.stop()
        await asyncio.sleep(down)
        await proxy.start()
        done.append((round(up, 2), round(down, 2)))
    return done


@dataclass
class SendLog:
    """What the answers claimed, over every sender."""

    accepted: list[str] = field(default_factory=list)  # event ids answered ACCEPTED
    duplicates: list[str] = field(default_factory=list)  # answered DUPLICATE
    retry_later: int = 0  # events answered RETRY_LATER (then sent again)
    unavailable: list[httpx.Response] = field(default_factory=list)  # the 503 answers
    # event ids that were in a request answered 503 (their delivery may have timed out
    # locally while the broker still stored them)
    in_unavailable: Counter[str] = field(default_factory=Counter)
    posts: int = 0


async def send_until_done(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    batches: Sequence[Sequence[ingest_pb2.LearningEvent]],
    log: SendLog,
    *,
    deadline: float,
) -> None:
    """Post ``batches`` in order; retry until each event is ACCEPTED or DUPLICATE.

    A 503 is retried whole after its Retry-After; events answered RETRY_LATER are
    sent again after the answer's Retry-After. Any other answer, or ``deadline``
    (time.monotonic()) passing, fails the test.
    """
    for batch in batches:
        pending = list(batch)
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} events still not accepted at the deadline; "
                    f"{len(log.unavailable)} answers were 503"
                )
            response = await client.post(
                "/v1/events", content=protobuf_body(pending), headers=headers
            )
            log.posts += 1
            if response.status_code == 503:
                log.unavailable.append(response)
                log.in_unavailable.update(e.attempt.envelope.event_id for e in pending)  # +1 each
                await asyncio.sleep(float(response.headers["Retry-After"]))
                continue
            answer = parse_response(response)
            still: list[ingest_pb2.LearningEvent] = []
            for event, result in zip(pending, answer.results, strict=True):
                event_id = event.attempt.envelope.event_id
                assert result.event_id == event_id
                if result.status == STATUS.EVENT_STATUS_ACCEPTED:
                    log.accepted.append(event_id)
                elif result.status == STATUS.EVENT_STATUS_DUPLICATE:
                    log.duplicates.append(event_id)
                elif result.status == STATUS.EVENT_STATUS_RETRY_LATER:
                    log.retry_later += 1
                    still.append(event)
                else:
                    raise AssertionError(f"event {event_id} rejected: {result.reason}")
            pending = still
            if still:
                await asyncio.sleep(float(response.headers["Retry-After"]))


async def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it is true, up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout_s} s")
        await asyncio.sleep(0.02)


def assert_unavailable_names(response: httpx.Response, dependency: str, retry_after_s: int) -> None:
    """A 503 problem+json with Retry-After that names ``dependency`` as unavailable."""
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == str(retry_after_s)
    problem = response.json()
    assert problem["status"] == 503
    assert {"field": dependency, "reason": "unavailable"} in problem["errors"], problem
    assert "results" not in problem  # a 503 claims no event accepted
