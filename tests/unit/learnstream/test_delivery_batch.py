"""The shared producer's batch of deliveries, and its answers without a broker.

DeliveryBatch is the countdown the poll thread runs, resolved once per batch.
AsyncProducer against an address nobody answers: every record is reported failed
within ``report_within_s``, and the timed-out producer is replaced on the next publish.
"""

from __future__ import annotations

import asyncio
import threading
from typing import cast

from confluent_kafka import KafkaError, Message

from learnstream.kafka import NOT_REPORTED, AsyncProducer, DeliveryBatch, OutgoingRecord
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
    assert batch.errors == ["KafkaError{code=_MSG_TIMED_OUT}", NOT_REPORTED, None]
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


async def test_records_nobody_acknowledges_fail_and_the_producer_is_replaced() -> None:
    # Port 9 (discard) on loopback: nothing listens, so every record times out.
    settings = Settings(kafka_bootstrap="127.0.0.1:9", ingest_delivery_timeout_ms=1_000)
    producer = AsyncProducer(settings)
    try:
        record = OutgoingRecord(topic="t", key=b"k", value=b"v")
        deliveries = await producer.publish([record, record])
        assert [d.ok for d in deliveries] == [False, False]
        assert all(d.partition == -1 and d.offset == -1 for d in deliveries)
        assert producer.replacements == 0
        batch = producer.publish_batch([record])
        assert producer.replacements == 1  # the timed-out producer was retired
        await asyncio.wait_for(batch.done, producer.report_within_s)
        assert batch.errors[0] is not None
        assert await producer.publish([]) == []
    finally:
        producer.close(timeout_s=0)


async def test_a_retired_producers_timed_out_records_do_not_replace_its_successor() -> None:
    # Reports are fed by hand, as the poll thread would call them, on batches that hold
    # no real record (a real one would also get the replaced producer's purge report).
    producer = AsyncProducer(Settings(kafka_bootstrap="127.0.0.1:9"))
    loop = asyncio.get_running_loop()
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    no_message = cast("Message", None)
    try:
        first = DeliveryBatch(loop, 2)  # taken by the first producer: generation 0
        producer._delivered(first, 0, timed_out, no_message)
        second = producer.publish_batch([])  # the next publish replaces the timed-out one
        assert (second.generation, producer.replacements) == (1, 1)
        # The first producer's other record times out after it was retired: no new
        # replacement, its successor has not failed.
        producer._delivered(first, 1, timed_out, no_message)
        producer.publish_batch([])
        assert producer.replacements == 1
        assert first.errors == [str(timed_out)] * 2
        # The current producer's own timeout still replaces it.
        current = DeliveryBatch(loop, 1)
        current.generation = second.generation
        producer._delivered(current, 0, timed_out, no_message)
        producer.publish_batch([])
        assert producer.replacements == 2
    finally:
        producer.close(timeout_s=0)
