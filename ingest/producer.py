"""Ingest's delivery policy for the shared producer (:class:`learnstream.kafka.AsyncProducer`).

Ingest publishes through :meth:`AsyncProducer.publish_batch` (one future per batch)
with one difference from every other service: **delivery is bounded by librdkafka,
not by the HTTP wait.** ``message.timeout.ms`` is :data:`MESSAGE_TIMEOUT_FACTOR`
times what a request waits (``ingest_delivery_timeout_ms``; 5 s by default, so 30 s).
A request that stops waiting leaves its records with librdkafka, whose delivery
report later says for sure whether the broker stored each one: ingest then marks the
claim done or releases it (ingest/batch.py). Giving up locally while the broker may
still store the record was what let a client retry publish a second copy.

Residual gap: a record that librdkafka times out while it was in flight may have
been stored (its ack lost for all of ``message.timeout.ms``); it is released and a
retry publishes it again. That takes 30 s of lost acks, not a 5 s local wait.
"""

from __future__ import annotations

from learnstream.kafka import AsyncProducer
from learnstream.settings import Settings

# librdkafka's delivery bound for ingest (message.timeout.ms), as a multiple of the
# request's wait: after this long the delivery report of a record says failed for sure;
# until then it may still be stored. Long enough to ride out a broker failover or a
# short network cut without a failed delivery; pending dedup claims outlive it
# (ingest/dedup.py), so a crashed ingest process frees them only after its records
# can no longer land.
MESSAGE_TIMEOUT_FACTOR = 6


def message_timeout_ms(settings: Settings) -> int:
    """librdkafka's ``message.timeout.ms`` for ingest (30,000 for the default 5 s wait)."""
    return MESSAGE_TIMEOUT_FACTOR * settings.ingest_delivery_timeout_ms


def ingest_producer(settings: Settings) -> AsyncProducer:
    """The shared producer with ingest's delivery bound, :func:`message_timeout_ms`.

    Connection set-up still fails within ``ingest_delivery_timeout_ms``
    (``learnstream.kafka.producer_config``).
    """
    return AsyncProducer(settings, delivery_timeout_ms=message_timeout_ms(settings))
