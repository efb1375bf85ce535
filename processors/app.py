"""The Faust application every processor runs in.

One app per processor: its id is ``<topic namespace>.<processor name>``, which is
also the Kafka consumer group and the ``consumer_group`` of its rows in
``processor_offsets``, so tests (each with its own namespace) never share a group.

Faust only moves records here. It keeps no tables (the authoritative state is
PostgreSQL), declares no leader topic, and does not produce: derived events go
through :class:`learnstream.kafka.AsyncProducer`. Its web server, when enabled by
``processor_web_port``, serves ``/metrics`` in the Prometheus text format.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.tables import TableManager
from prometheus_client import generate_latest

from learnstream.kafka import faust_broker_kwargs
from learnstream.settings import Settings


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
    if web_port > 0:
        _add_metrics_page(app)
    return app


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


def _add_metrics_page(app: faust.App) -> None:
    @app.page("/metrics")
    async def metrics(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # The Prometheus text format; aiohttp adds the charset itself and refuses one here.
        return view.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
