"""Liveness, readiness and metrics.

* ``/healthz``: the process answers (no dependency is checked, so an orchestrator
  does not restart ingest because Kafka is down).
* ``/readyz``: the broker answers metadata and has the input topics, Redis answers
  PING and PostgreSQL ``SELECT 1``, each within :data:`READY_TIMEOUT_S`; otherwise
  503 naming what is down.
* ``/metrics`` is not here: it is served on the metrics port only (ingest/app.py).
"""

from __future__ import annotations

import asyncio

from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Request

from ingest.batch import STREAM_OF_KIND
from ingest.deps import Public, SettingsDep
from ingest.exceptions import DependencyUnavailableError, FieldProblem
from learnstream.settings import Settings

# Orchestrators and Prometheus call these without credentials.
router = APIRouter(tags=["health"], dependencies=[Public])

# Each readiness check gets this long; an orchestrator polls often, so keep it short.
READY_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the event loop runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Broker, Redis and PostgreSQL answer",
    responses={503: {"description": "A dependency is down; the problem names which"}},
)
async def readyz(request: Request, settings: SettingsDep) -> dict[str, object]:
    """``{"status": "ready", "checks": {...}}``, or 503 naming each dependency that failed."""
    state = request.app.state
    names = ("kafka", "redis", "postgresql")
    outcomes = await asyncio.gather(
        _check_kafka(state.admin, settings),
        asyncio.wait_for(state.redis.ping(), READY_TIMEOUT_S),
        state.pool.fetchval("SELECT 1", timeout=READY_TIMEOUT_S),
        return_exceptions=True,
    )
    down = {
        name: _describe(outcome)
        for name, outcome in zip(names, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    }
    if down:
        error = DependencyUnavailableError(
            ", ".join(down),
            "not ready: " + "; ".join(f"{name}: {why}" for name, why in down.items()),
            retry_after_s=settings.ingest_retry_after_s,
        )
        error.errors = [FieldProblem(name, why) for name, why in down.items()]
        raise error
    return {"status": "ready", "checks": dict.fromkeys(names, "ok")}


async def _check_kafka(admin: AdminClient, settings: Settings) -> None:
    metadata = await asyncio.to_thread(admin.list_topics, timeout=READY_TIMEOUT_S)
    wanted = {settings.topic(stream) for stream in STREAM_OF_KIND.values()}
    missing = sorted(wanted - set(metadata.topics))
    if missing:
        raise LookupError(f"topics missing: {', '.join(missing)} (run `make services`)")


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {READY_TIMEOUT_S:g} s"
    return f"{type(error).__name__}: {error}"
