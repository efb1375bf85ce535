"""Liveness and readiness (Prometheus metrics are on the metrics port: api/app.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, Public, RedisDep
from api.exceptions import ServiceDownError

# Orchestrators and Prometheus call these without credentials.
router = APIRouter(tags=["operations"], dependencies=[Public])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ok while the event loop runs; says nothing about backing services."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: PostgreSQL and Redis answer")
async def readyz(pool: PoolDep, redis: RedisDep) -> dict[str, str]:
    """503 problem naming the service that did not answer, else ok."""
    try:
        await pool.fetchval("SELECT 1")
    except Exception as exc:  # any failure means "not ready"; the detail says which
        raise ServiceDownError(f"PostgreSQL did not answer: {exc}", field="postgres") from exc
    try:
        await redis.ping()
    except Exception as exc:
        raise ServiceDownError(f"Redis did not answer: {exc}", field="redis") from exc
    return {"status": "ready"}
