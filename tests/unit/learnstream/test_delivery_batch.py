"""DeliveryBatch: the countdown the poll thread runs, resolved once per batch."""

from __future__ import annotations

import asyncio
import threading

from ingest.producer import MESSAGE_TIMEOUT_FACTOR, DeliveryBatch, message_timeout_ms
from learnstream.settings import Settings


async def test_a_batch_resolves_once_every_record_is_reported_from_another_thread() -> None:
    batch = DeliveryBatch(asyncio.get_running_loop(), 3)

    def poll_thread() -> None:
        batch.report(2, None)
        batch.report(0, "KafkaError{code=_MSG_TIMED_OUT}")

    thread = threading.Thread(target=poll_thread)
    thread.start()
    thread.join()
    await asyncio.sleep(0.01)
    assert not batch.done.done()  # record 1 is still undecided
    batch.report(1, None)
    await asyncio.wait_for(batch.done, 1.0)
    assert batch.errors == ["KafkaError{code=_MSG_TIMED_OUT}", None, None]


async def test_records_never_queued_are_reported_failed_at_once() -> None:
    batch = DeliveryBatch(asyncio.get_running_loop(), 4)
    batch.report(0, None)
    batch.give_up_unqueued(1, "producer queue full")
    await asyncio.wait_for(batch.done, 1.0)
    assert batch.errors == [None] + ["producer queue full"] * 3


async def test_an_empty_batch_is_resolved() -> None:
    assert DeliveryBatch(asyncio.get_running_loop(), 0).done.done()


def test_librdkafka_waits_longer_than_a_request() -> None:
    settings = Settings(ingest_delivery_timeout_ms=5_000)
    assert message_timeout_ms(settings) == MESSAGE_TIMEOUT_FACTOR * 5_000 == 30_000
