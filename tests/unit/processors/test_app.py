"""The processors' Faust app: its consumer gets the configured fetch wait."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import aiokafka

from learnstream.settings import Settings
from processors.app import FetchWaitConsumer, FetchWaitTransport, create_app


def test_default_fetch_wait_is_short() -> None:
    # Faust's own 1,500 ms made every record wait up to 1.5 s on the local broker.
    assert Settings().consumer_fetch_max_wait_ms == 100


async def test_faust_consumer_is_created_with_the_configured_fetch_wait(tmp_path: Path) -> None:
    settings = Settings(consumer_fetch_max_wait_ms=123, data_dir=tmp_path, run_dir=tmp_path)
    app = create_app(settings, "mastery")
    assert isinstance(app.transport, FetchWaitTransport)
    # The aiokafka consumer exactly as Faust's consumer thread builds it on start;
    # constructing it does not connect.
    consumer = cast(FetchWaitConsumer, app.consumer)._thread._create_consumer(
        asyncio.get_running_loop()
    )
    assert isinstance(consumer, aiokafka.AIOKafkaConsumer)
    try:
        assert consumer._fetch_max_wait_ms == 123
        # Everything else is still Faust's: its group, no auto-commit.
        assert consumer._group_id == app.conf.id
        assert consumer._enable_auto_commit is False
    finally:
        await consumer.stop()
