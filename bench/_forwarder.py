"""The plain forwarder: the simplest correct HTTP → Kafka path, ingest's baseline.

``python -m bench._forwarder`` serves ``POST /v1/events`` on ``ingest_host:ingest_port``
(and ``GET /readyz``) with a raw ASGI app on the same uvicorn as ingest. Per request
it parses the ``IngestRequest`` protobuf, produces each event as ingest would publish
it (topic of its kind, key ``learner_key(tenant, user_id)``, value the specific
message, the event-type and event_id headers) through the same producer
(:func:`ingest.producer.ingest_producer`: idempotent, acks=all, linger 2 ms), awaits
every delivery report and answers an ``IngestResponse`` (ACCEPTED per stored event,
RETRY_LATER per failed one). No authentication, validation, stamping, erasure check
or deduplication: what ingest costs beyond this is the price of those
(bench/ingest.py runs both under the same load).

The leading underscore keeps ``python -m bench`` from running it as a benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from ingest.batch import STREAM_OF_KIND
from ingest.producer import ingest_producer
from learnstream.asgi import uvicorn_proxy_options
from learnstream.events.v1 import ingest_pb2
from learnstream.kafka import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    AsyncProducer,
    OutgoingRecord,
    learner_key,
)
from learnstream.settings import Settings, get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The tenant of every forwarded event (the forwarder authenticates nobody).
TENANT = "bench"
_ACCEPTED = ingest_pb2.EventStatus.EVENT_STATUS_ACCEPTED
_RETRY_LATER = ingest_pb2.EventStatus.EVENT_STATUS_RETRY_LATER
_PROTOBUF = [(b"content-type", b"application/x-protobuf")]


class Forwarder:
    """The raw ASGI app; the producer lives from lifespan start to shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AsyncProducer | None = None
        self._topics = {kind: settings.topic(stream) for kind, stream in STREAM_OF_KIND.items()}
        self._type_headers = {
            kind: (
                EVENT_TYPE_HEADER,
                getattr(ingest_pb2.LearningEvent(), kind).DESCRIPTOR.full_name.encode(),
            )
            for kind in STREAM_OF_KIND
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == "/v1/events" and scope["method"] == "POST":
                await self._forward(receive, send)
            elif scope["path"] == "/readyz":
                await _answer(send, 200, b"ready", [(b"content-type", b"text/plain")])
            else:
                await _answer(send, 404, b"not found", [(b"content-type", b"text/plain")])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._producer = ingest_producer(self._settings)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._producer is not None:
                    await asyncio.to_thread(self._producer.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, receive: Receive, send: Send) -> None:
        assert self._producer is not None, "lifespan not started"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = ingest_pb2.IngestRequest.FromString(b"".join(chunks))
        records = []
        event_ids = []
        for event in request.events:
            kind = event.WhichOneof("event")
            if kind is None:
                continue
            body = getattr(event, kind)
            event_id = body.envelope.event_id
            event_ids.append(event_id)
            records.append(
                OutgoingRecord(
                    topic=self._topics[kind],
                    key=learner_key(TENANT, body.envelope.user_id),
                    value=body.SerializeToString(),
                    headers=(self._type_headers[kind], (EVENT_ID_HEADER, event_id.encode())),
                )
            )
        batch = self._producer.publish_batch(records)
        await asyncio.wait({batch.done}, timeout=self._producer.report_within_s)
        response = ingest_pb2.IngestResponse(
            results=[
                ingest_pb2.EventResult(
                    index=i, event_id=event_id, status=_ACCEPTED if error is None else _RETRY_LATER
                )
                for i, (event_id, error) in enumerate(zip(event_ids, batch.errors, strict=True))
            ]
        )
        response.accepted = sum(1 for error in batch.errors if error is None)
        response.retry_later = len(records) - response.accepted
        await _answer(send, 200, response.SerializeToString(), _PROTOBUF)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve the forwarder until interrupted (settings from the environment)."""
    settings = get_settings()
    config = uvicorn.Config(
        Forwarder(settings),
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,
        **uvicorn_proxy_options(settings.trusted_proxies),
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
