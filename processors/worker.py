"""A processor as a Faust worker: the agent that feeds its batches to a BatchRunner.

:func:`attach` registers, on a processor's Faust app (:mod:`processors.app`), an
agent that takes batches of records off the processor's topics, hands each to
:class:`processors.base.BatchRunner` (which applies it and commits its offsets in
PostgreSQL), and a timer that samples lag and liveness (:mod:`processors.lag`).

Offsets and acks. Faust's ``Stream.take_events`` acks a batch's events when the
loop asks for the next batch, i.e. after the runner committed; Faust then commits
those offsets to Kafka every ``broker_commit_interval``. Kafka's committed offset
therefore never passes PostgreSQL's: after a ``kill -9`` Kafka redelivers from an
older offset and the runner drops what was already applied, so nothing is lost or
counted twice. On SIGTERM Faust drains the records it already delivered
(``Consumer.wait_empty``): the batch in flight commits if it can, a batch
retrying against an unreachable service gives up
(:class:`~processors.base.BatchAbandoned`), and later batches are not applied; none
of those is acked, so the next worker gets them, and a stop never hangs on a
database that is down. ``take_events`` acks its buffer in a ``finally`` even when
the loop body raised, so a batch that fails for good (a bug in this machinery, or
the task cancelled) first has its messages marked acked without recording their
offsets (:func:`_withhold_acks`); a bug then crashes the worker on purpose, because
a restarted worker resumes from the committed offsets, while Faust's agent
supervisor would restart the agent past the failed batch.

Why no seek to PostgreSQL's offsets on assignment: Faust sends the
``on_partitions_assigned`` signal *before* its recovery step, which ends with
``Consumer.perform_seek()`` (seek to Kafka's committed offsets) and restarts the
fetcher; a seek made in the signal is overwritten, and the hooks after it are
synchronous and run once fetching has resumed. Since Kafka's committed offset
never passes PostgreSQL's, seeking would only save re-reading what was applied
since Faust's last offset commit (at most ``broker_commit_interval``, 2.8 s, of
records plus the batch in flight); the runner's skip rule makes that re-read
harmless. Records held back at an offset gap are not acked, and the consumer is
seeked back to the stored offset once the batch committed (:func:`_rewind`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import faust
from faust.types import TP

from learnstream.settings import Settings
from processors import metrics
from processors.base import BatchAbandoned, BatchOutcome, BatchRunner, Processor
from processors.lag import end_offset
from processors.offsets import SourceRecord, TopicPartition

log = logging.getLogger(__name__)

EventT = TypeVar("EventT")


def source_record(message: Any) -> SourceRecord:
    """A SourceRecord from a Faust message (raw key and value bytes)."""
    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((str(k), bytes(v or b"")) for k, v in pairs),
    )


def _withhold_acks(events: Sequence[Any]) -> None:
    # take_events() acks its whole buffer in a `finally`, even when the loop body
    # raised. Marking the messages acked first makes Faust's consumer skip them
    # (Message.ack and Consumer.ack both return early for an acked message), so
    # Faust never commits to Kafka an offset whose effect is not in PostgreSQL.
    for event in events:
        event.message.acked = True


def attach(
    app: faust.App,
    processor: Processor[EventT],
    settings: Settings,
    *,
    started_at: float | None = None,
) -> BatchRunner[EventT]:
    """Register an agent on ``app`` that feeds ``processor``'s topics through a BatchRunner.

    Batches are at most ``processor_batch_max`` records, or what arrived within
    ``processor_batch_within_s`` seconds. Returns the runner (for tests and metrics).
    """
    runner = BatchRunner(
        processor,
        settings,
        consumer_group=app.conf.id,
        started_at=started_at,
        stopping=lambda: bool(app.should_stop),
    )
    topic = app.topic(
        *(settings.topic(stream) for stream in processor.sources),
        key_serializer="raw",
        value_serializer="raw",
        # Should Faust be the one to create the topics: the same retention as
        # learnstream.kafka.topic_config gives them.
        retention=settings.topic_retention_ms / 1000,
    )

    async def consume(stream: faust.StreamT[bytes]) -> None:
        # Agents receive a faust.Stream; take_events() is not part of StreamT.
        batches = cast("faust.Stream[bytes]", stream).take_events(
            settings.processor_batch_max, within=settings.processor_batch_within_s
        )
        await runner.warm_up()
        frozen = False
        try:
            async for events in batches:
                committed = False
                if app.should_stop:
                    # Faust drains delivered records before it stops (wait_empty). Left
                    # unapplied and unacked, they go to the next worker, and a stop
                    # never waits on a database that is down.
                    _withhold_acks(events)
                    continue
                try:
                    outcome = await runner.process([source_record(e.message) for e in events])
                    committed = True
                    if not frozen:
                        # After the first batch: it imports and caches what processors
                        # load lazily (schedulers, parameters), which lives on too.
                        frozen = True
                        _freeze_long_lived_objects()
                    await _rewind(app, events, outcome)
                except BatchAbandoned:
                    log.warning(
                        "stopping: the batch in flight is left to the next worker",
                        extra={"processor": processor.name, "batch_origin": events[0].message.tp},
                    )
                except Exception as exc:
                    log.critical(
                        "processor failed outside any single record; stopping the worker so "
                        "that it restarts from the committed offsets",
                        exc_info=True,
                        extra={"processor": processor.name},
                    )
                    await app.crash(exc)
                    raise
                finally:
                    if not committed:
                        _withhold_acks(events)
        finally:
            await runner.close()

    async def sample_partitions() -> None:
        await _sample_partitions(app, runner, timeout_s=settings.processor_lag_interval_s)

    app.agent(topic, name=f"{app.conf.id}.batches")(consume)
    app.timer(settings.processor_lag_interval_s, name=f"{app.conf.id}.lag")(sample_partitions)
    return runner


def _freeze_long_lived_objects() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    A worker holds some 370,000 objects (Faust, aiokafka, protobuf, numpy, the pools)
    that live as long as it does, and each full collection scanned them all: 0.2-0.4 s
    with the event loop stopped (measured on the learner-state worker). Frozen, a full
    collection scans only what batches allocate (1-15 ms). Frozen objects are never
    freed by the collector, which long-lived objects do not need anyway. One full
    collection first, so garbage is not frozen with them.
    """
    gc.collect()
    gc.freeze()


async def _rewind(app: faust.App, events: Sequence[Any], outcome: BatchOutcome) -> None:
    # Held-back records must not be acked (Faust would commit past them), and the
    # consumer re-reads their partition from the stored offset.
    if not outcome.held_back:
        return
    _withhold_acks(
        [
            e
            for e in events
            if TopicPartition(e.message.topic, e.message.partition) in outcome.held_back
        ]
    )
    for rewind in outcome.seeks:
        await app.consumer.seek(TP(rewind.tp.topic, rewind.tp.partition), rewind.expected)


async def _sample_partitions(app: faust.App, runner: BatchRunner[Any], timeout_s: float) -> None:
    """One lag and liveness sample of this worker's partitions (processors.lag).

    A broker or database that does not answer within ``timeout_s`` must not hide a
    stall, which is exactly when it matters: the end offsets then come from the last
    fetch alone, the stored offsets from this worker's own last commits.
    """
    name = runner.processor.name
    assigned = sorted(TopicPartition(tp.topic, tp.partition) for tp in app.consumer.assignment())
    tps = [TP(tp.topic, tp.partition) for tp in assigned]
    listed: Mapping[TP, int] = {}
    stored = runner.monitor.last_committed()
    if assigned:
        try:
            listed = await asyncio.wait_for(app.consumer.highwaters(*tps), timeout_s)
        except Exception as exc:  # ListOffsets(latest) failed: the fetch's high watermark
            _sample_failed(name, "broker", exc)
        try:
            stored = await asyncio.wait_for(runner.stored_offsets(assigned), timeout_s)
        except Exception as exc:
            _sample_failed(name, "database", exc)
    ends = {
        # highwater(): from the last fetch response; None before the first fetch.
        tp: end_offset(app.consumer.highwater(faust_tp), listed.get(faust_tp))
        for tp, faust_tp in zip(assigned, tps, strict=True)
    }
    runner.monitor.observe(assigned, ends, stored)


def _sample_failed(name: str, service: str, exc: Exception) -> None:
    metrics.LAG_SAMPLE_FAILURES.labels(name).inc()
    log.warning(
        "lag sample: %s did not answer",
        service,
        extra={"processor": name, "error": f"{type(exc).__name__}: {exc}"},
    )
