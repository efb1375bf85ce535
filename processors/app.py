"""The Faust application every processor runs in.

One app per processor: its id is ``<topic namespace>.<processor name>``, which is
also the Kafka consumer group and the ``consumer_group`` of its rows in
``processor_offsets``, so tests (each with its own namespace) never share a group.

Faust only moves records here. It keeps no tables (the authoritative state is
PostgreSQL), declares no leader topic, and does not produce: derived events go
through :class:`learnstream.kafka.AsyncProducer`. Its aiokafka consumer waits at most
``consumer_fetch_max_wait_ms`` per fetch (:class:`FetchWaitTransport`; Faust hard-codes
1,500 ms). Its web server, when enabled by
``processor_web_port``, serves ``/metrics`` in the Prometheus text format, ``/healthz``
(the process answers) and ``/readyz`` (PostgreSQL and the broker answer; 503 naming
what is down — while PostgreSQL is down the worker holds its offsets and retries).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiokafka
import faust
from confluent_kafka import KafkaException
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import generate_latest
from yarl import URL

from learnstream import db
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import admin_client, faust_broker_kwargs
from learnstream.settings import Settings

# A readiness probe must answer well inside a probe period, whatever is down.
READINESS_TIMEOUT_S = 2.0


def app_id(settings: Settings, name: str) -> str:
    """The Faust app id and Kafka consumer group of processor ``name``."""
    return f"{settings.kafka_topic_namespace}.{name}"


def create_app(settings: Settings, name: str) -> faust.App:
    """A Faust app for processor ``name`` on the configured cluster; nothing starts yet.

    Consumer-group timings come from settings (the fixtures' 4 s session timeout
    lets Tansu finish a group join in about 2 s). Raw bytes in, at-least-once
    delivery: the exactly-once effect is built on PostgreSQL in processors.base.
    """
    web_port = settings.processor_web_port
    # Faust creates <datadir>/ on start but not its parents. It stores nothing there
    # (no tables), so a fresh data_dir is enough.
    datadir = settings.data_dir / "faust" / app_id(settings, name)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        **faust_broker_kwargs(settings),
        "processing_guarantee": "at_least_once",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "autodiscover": False,
        "topic_disable_leader": True,
        "datadir": str(datadir),
        "store": "memory://",
        "web_enabled": web_port > 0,
        "web_port": web_port or 6066,
        # Quiet the CLI niceties: logs are JSON lines from learnstream.logging.
        "worker_redirect_stdouts": False,
        "TableManager": TablelessTableManager,
    }
    app = faust.App(app_id(settings, name), **options)
    # Faust's public transport setter; nothing has created the default transport yet.
    app.transport = FetchWaitTransport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms
    )
    if web_port > 0:
        _add_web_pages(app, settings)
    return app


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with the transport's fetch wait.

    Faust passes ``fetch_max_wait_ms=1500`` to ``AIOKafkaConsumer`` with no setting to
    change it. Apache Kafka answers a waiting fetch as soon as records arrive, so there
    the wait only spaces idle polls; Tansu answers only when the wait runs out, so
    locally a record waited up to 1.5 s before the processor saw it. aiokafka reads
    ``_fetch_max_wait_ms`` when ``start()`` builds its fetcher, which is after this
    method returns (tests/unit/processors/test_app.py checks the fetcher gets it).
    """

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = cast("FetchWaitTransport", transport).fetch_max_wait_ms
        return consumer


class FetchWaitConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer running :class:`FetchWaitConsumerThread`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchWaitTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose consumers wait ``fetch_max_wait_ms`` (ms) per fetch."""

    Consumer = FetchWaitConsumer

    def __init__(self, url: list[URL], app: faust.App, *, fetch_max_wait_ms: int) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms


class TablelessTableManager(TableManager):
    """Faust's table manager without its one-second wait for late table definitions.

    ``TableManager.on_start`` sleeps 1 s so tables defined after the app starts
    still register; processors define none (state lives in PostgreSQL), and that
    second is a quarter of a worker's start-up against the local broker.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


async def readiness(settings: Settings) -> dict[str, str]:
    """``{"postgres": ..., "kafka": ...}``, each ``"ok"`` or ``"down: <reason>"``."""
    checks: dict[str, str] = {}
    try:
        conn = await asyncio.wait_for(db.connect(settings), READINESS_TIMEOUT_S)
        try:
            await conn.fetchval("SELECT 1", timeout=READINESS_TIMEOUT_S)
        finally:
            await conn.close()
        checks["postgres"] = "ok"
    except (ServiceUnavailableError, OSError, TimeoutError) as exc:
        checks["postgres"] = f"down: {exc}"
    try:
        await asyncio.to_thread(admin_client(settings).list_topics, timeout=READINESS_TIMEOUT_S)
        checks["kafka"] = "ok"
    except KafkaException as exc:
        checks["kafka"] = f"down: {exc}"
    return checks


def _add_web_pages(app: faust.App, settings: Settings) -> None:
    @app.page("/metrics")
    async def metrics(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # The Prometheus text format; aiohttp adds the charset itself and refuses one here.
        return view.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        checks = await readiness(settings)
        ready = all(state == "ok" for state in checks.values())
        return view.json({"ready": ready, **checks}, status=200 if ready else 503)
