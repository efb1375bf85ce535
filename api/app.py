"""The API application: ``create_app(settings)`` wires routes, errors, metrics and resources.

Middleware (api/hardening.py, learnstream/asgi.py) limits request bodies while they
stream in, counts unauthenticated auth requests per address before their bodies are
read, adds security headers, and serves ``/metrics`` on the metrics port only.

The lifespan opens one asyncpg pool (``learnstream.db.create_pool``) and one
Redis client per process and closes both at shutdown; routes reach them through
``api.deps``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import hardening
from api.metrics import HTTP_LATENCY, HTTP_REQUESTS
from api.routes import (
    api_keys,
    audit,
    auth,
    classes,
    content,
    dashboards,
    experiments,
    health,
    learner_ids,
    learners,
    lti,
    oidc,
    operator,
    placement,
    predictions,
    skills,
    tenants,
    users,
    web,
    xapi,
)
from api.services.email import EmailSender, LimitedMailer
from api.services.events import EventPublisher
from api.services.outbox import Outbox, transport_for
from learnstream import db
from learnstream.asgi import LimitRequestBody, MetricsOnOwnPort, ObserveRequests, ResponseHeaders
from learnstream.problems import install_problem_handlers
from learnstream.redis import redis_client
from learnstream.settings import Settings, get_settings

API_VERSION = "0.1.0"


# Every area's router, in the order the OpenAPI document lists them.
_ROUTERS = (
    auth.router,
    oidc.router,
    lti.router,
    users.router,
    api_keys.router,
    classes.router,
    learners.router,
    predictions.router,
    tenants.router,
    skills.router,
    content.router,
    audit.router,
    learner_ids.router,
    placement.router,
    dashboards.router,
    experiments.router,
    operator.router,
    xapi.router,
    web.router,
)


def create_app(
    settings: Settings | None = None, *, email_sender: EmailSender | None = None
) -> FastAPI:
    """A ready-to-serve app; ``settings`` defaults to the process-wide ones.

    ``email_sender`` is the outbox's transport; it defaults to the one settings name
    (``mail_delivery``: the SMTP relay, or the development mailbox in local mode).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await db.create_pool(settings)
        # A bounded pool that makes a burst wait for a free connection (up to
        # redis_pool_timeout_s) instead of failing with "Too many connections". Opening a
        # connection is part of the same wait: a process busy with a burst may take
        # seconds to finish the handshake, which is no reason to answer 503.
        app.state.redis = redis_client(
            settings,
            max_connections=settings.redis_max_connections,
            pool_timeout_s=settings.redis_pool_timeout_s,
            connect_timeout_s=settings.redis_pool_timeout_s,
        )
        # Account mail is capped per address and account (in Redis), queued in the
        # outbox table with the change it reports, and delivered by a task of this
        # process through the transport (SMTP relay, or files in local mode).
        transport = app.state.email_sender
        outbox = Outbox(app.state.pool, transport, settings)
        app.state.email_sender = LimitedMailer(outbox, app.state.redis, settings)
        outbox.start()
        app.state.publisher = EventPublisher(settings)
        try:
            yield
        finally:
            await app.state.email_sender.aclose()
            app.state.email_sender = transport
            app.state.publisher.close()
            await app.state.redis.aclose()
            await app.state.pool.close()

    app = FastAPI(
        title="Learnstream API",
        version=API_VERSION,
        summary="Accounts and roles, content CMS, placement tests, dashboards and operator views "
        "of Learnstream.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.email_sender = email_sender or transport_for(settings)
    install_problem_handlers(app)
    # Innermost first: the body limit and the auth address limit act before any route
    # reads or validates a body; headers go on every answer, 413s and 429s included.
    app.add_middleware(LimitRequestBody, limits=hardening.body_limits(settings))
    app.add_middleware(hardening.LimitAuthByAddress, settings=settings)
    app.add_middleware(ResponseHeaders, headers_for=hardening.security_headers)
    app.add_middleware(ObserveRequests, observe=_observe_request)
    # Outermost: /metrics exists only on the metrics port (python -m api binds it).
    app.add_middleware(
        MetricsOnOwnPort,
        port=settings.api_metrics_port,
        render=generate_latest,
        content_type=CONTENT_TYPE_LATEST,
    )
    app.include_router(health.router)
    for router in _ROUTERS:
        app.include_router(router)
    app.mount("/static", web.static_files(), name="static")
    return app


def _observe_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route).observe(seconds)
