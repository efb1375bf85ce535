"""The ingest FastAPI application: ``create_app(settings)``.

The lifespan opens what a request needs and closes it on shutdown: the idempotent
Kafka producer (``learnstream.kafka.AsyncProducer`` with ingest's delivery bound,
ingest/producer.py), an admin client for readiness, a Redis client (deduplication)
and an asyncpg pool (API keys). They live on ``app.state``. Every error answer is
RFC 9457 ``application/problem+json`` with ``errors: [{field, reason}]``, in the one
scheme of both services (learnstream/problems.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ingest.apikeys import CachedApiKeyAuthenticator
from ingest.batch import BatchIngestor
from ingest.dedup import DedupStore
from ingest.metrics import IngestMetrics
from ingest.producer import ingest_producer
from ingest.routes import events, health, xapi
from learnstream import db
from learnstream.asgi import (
    BodyLimits,
    LimitRequestBody,
    MetricsOnOwnPort,
    ObserveRequests,
    ResponseHeaders,
    api_security_headers,
)
from learnstream.kafka import admin_client
from learnstream.problems import install_problem_handlers
from learnstream.redis import redis_client
from learnstream.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Redis calls fail fast (the request answers 503) instead of waiting out long retries;
# one quick retry covers a pooled connection that Redis closed.
_REDIS_TIMEOUT_S = 2.0
# Shutdown waits this long for outstanding deliveries to be reported and settled.
_DRAIN_TIMEOUT_S = 10.0
# Routes other than POST /v1/events take no body worth more than this (bytes).
_OTHER_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ingest app for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    metrics = IngestMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(metrics.process_exiting)
            producer = ingest_producer(settings)
            stack.push_async_callback(asyncio.to_thread, producer.close)
            redis = redis_client(
                settings,
                connect_timeout_s=_REDIS_TIMEOUT_S,
                socket_timeout_s=_REDIS_TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
            )
            stack.push_async_callback(redis.aclose)
            pool = await db.create_pool(settings)
            stack.push_async_callback(pool.close)
            metrics.watch_producer(producer)
            app.state.producer = producer
            app.state.redis = redis
            app.state.pool = pool
            app.state.admin = admin_client(settings)
            app.state.authenticator = CachedApiKeyAuthenticator.for_pool(pool, settings)
            ingestor = BatchIngestor(
                settings=settings,
                producer=producer,
                dedup=DedupStore.from_settings(
                    redis, settings, on_unreplicated=metrics.count_unreplicated
                ),
                metrics=metrics,
                pool=pool,
            )
            # Runs first on shutdown, while Redis and the producer are still open:
            # deliveries still in flight are settled (claims marked done or released).
            stack.push_async_callback(ingestor.drain, _DRAIN_TIMEOUT_S)
            app.state.ingestor = ingestor
            yield

    app = FastAPI(
        title="Learnstream ingest",
        version="1.0.0",
        summary="Post learning events (protobuf or JSON); answered after the broker acknowledged.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(xapi.router)
    install_problem_handlers(
        app,
        internal_detail="ingest failed unexpectedly; nothing of this request was claimed accepted",
    )
    # Innermost first: bodies are limited while they stream in (POST /v1/events and
    # /xAPI/statements take ingest_max_body_bytes, anything else a small default),
    # headers go on every answer.
    app.add_middleware(
        LimitRequestBody,
        limits=BodyLimits(
            _OTHER_BODY_BYTES,
            {
                "/v1/events": settings.ingest_max_body_bytes,
                "/xAPI/statements": settings.ingest_max_body_bytes,
            },
        ),
    )
    app.add_middleware(ResponseHeaders, headers_for=api_security_headers)
    _add_request_metrics(app, metrics)
    # Outermost: /metrics exists only on the metrics port (python -m ingest binds it).
    app.add_middleware(
        MetricsOnOwnPort,
        port=settings.ingest_metrics_port,
        render=metrics.render,
        content_type=CONTENT_TYPE_LATEST,
    )
    return app


def _add_request_metrics(app: FastAPI, metrics: IngestMetrics) -> None:
    def observe(route: str, method: str, status: int, _seconds: float) -> None:
        metrics.requests.labels(route=route, method=method, status=status).inc()

    app.add_middleware(ObserveRequests, observe=observe)
