"""The processors' Faust consumer sends the configured fetch wait to the real broker.

Faust hard-codes ``fetch_max_wait_ms=1500``; processors.app.FetchWaitTransport replaces
it with ``consumer_fetch_max_wait_ms``. This test starts the aiokafka consumer exactly
as Faust's consumer thread builds it, against the session's Tansu broker, and records
the FetchRequests its fetcher sends (a spy that forwards every request unchanged).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.protocol.fetch import FetchRequest

from learnstream.kafka import Stream
from learnstream.settings import Settings
from processors.app import FetchWaitConsumer, create_app


async def test_fetch_requests_carry_the_configured_wait(topics: Settings) -> None:
    settings = topics.model_copy(update={"consumer_fetch_max_wait_ms": 137})
    app = create_app(settings, "learner_state")
    consumer = cast(FetchWaitConsumer, app.consumer)._thread._create_consumer(
        asyncio.get_running_loop()
    )
    waits: list[int] = []
    send = consumer._client.send

    async def recording_send(node_id: int, request: Any, **kwargs: Any) -> Any:
        if isinstance(request, FetchRequest):
            waits.append(request._max_wait_ms)
        return await send(node_id, request, **kwargs)

    consumer._client.send = recording_send
    await consumer.start()
    try:
        # Assigned directly: the group join is Faust's business, fetching is what matters.
        consumer.assign([TopicPartition(settings.topic(Stream.ATTEMPTS), 0)])
        # An empty topic: each fetch waits on the broker, and getmany returns nothing.
        for _ in range(10):
            await consumer.getmany(timeout_ms=200)
            if len(waits) >= 2:
                break
    finally:
        await consumer.stop()
    assert len(waits) >= 2, "the fetcher sent no FetchRequest"
    assert set(waits) == {137}
