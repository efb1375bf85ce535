"""Ingest latency: one POST /v1/events of a 100-event batch, end to end, over HTTP.

Run: ``.venv/bin/python -m bench.ingest_publish [--batches N] [--size 100]``.
Prints a table and writes ``bench/results/ingest_publish.json``.

``python -m ingest`` runs as its own process (uvicorn) on an isolated broker,
database and Redis namespace (bench/common.py). Batches are posted one after the
other (no concurrency), as protobuf and as JSON, each with fresh event ids, so
every event is validated, claimed in Redis, published with acks=all and awaited.
"POST" is the client-side round trip; "publish" is ingest's own histogram of
produce-to-last-acknowledgement (``learnstream_ingest_publish_seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from google.protobuf import json_format

from bench.common import bench_environment, percentiles, print_table, write_results
from learnstream.events.v1 import attempt_pb2, envelope_pb2, ingest_pb2

NAME = "ingest_publish"


def make_batch(size: int, round_number: int) -> ingest_pb2.IngestRequest:
    """``size`` valid attempts of 20 learners, each with a fresh event id."""
    request = ingest_pb2.IngestRequest()
    now = datetime.now(UTC)
    for i in range(size):
        envelope = envelope_pb2.Envelope(
            event_id=str(uuid.uuid4()), user_id=f"learner-{i % 20}", session_id=f"s{round_number}"
        )
        envelope.occurred_at.FromDatetime(now)
        request.events.add().attempt.CopyFrom(
            attempt_pb2.AttemptEvent(
                envelope=envelope,
                item_id=f"item-{i}",
                skill_ids=["fractions.add"],
                correct=i % 3 != 0,
                response_time_ms=3000 + i,
                attempt_number=1,
            )
        )
    return request


def publish_histogram(metrics_text: str) -> tuple[float, float]:
    """(sum in s, count) of ingest's publish-latency histogram."""
    total = re.search(r"^learnstream_ingest_publish_seconds_sum (\S+)$", metrics_text, re.M)
    count = re.search(r"^learnstream_ingest_publish_seconds_count (\S+)$", metrics_text, re.M)
    if total is None or count is None:
        raise RuntimeError("ingest's /metrics lacks learnstream_ingest_publish_seconds")
    return float(total[1]), float(count[1])


async def measure(batches: int, size: int) -> dict[str, Any]:
    async with bench_environment(NAME) as env:
        env.start("ingest", ["ingest"])
        base = f"http://127.0.0.1:{env.settings.ingest_port}"
        metrics = f"http://127.0.0.1:{env.settings.ingest_metrics_port}/metrics"  # not public
        await env.wait_ready(f"{base}/readyz", "ingest")
        key = await env.api_key("bench")
        results: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for fmt in ("protobuf", "json"):
                sum_before, count_before = publish_histogram((await client.get(metrics)).text)
                latencies_ms = []
                for round_number in range(batches + 1):  # the first is a warm-up
                    request = make_batch(size, round_number)
                    if fmt == "protobuf":
                        body = request.SerializeToString()
                        content_type = "application/x-protobuf"
                    else:
                        body = json.dumps(
                            json_format.MessageToDict(request, preserving_proto_field_name=True)
                        ).encode()
                        content_type = "application/json"
                    started = time.perf_counter()
                    answer = await client.post(
                        "/v1/events",
                        content=body,
                        headers={"X-API-Key": key, "Content-Type": content_type},
                    )
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    if answer.status_code != 200:
                        raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text}")
                    if round_number > 0:
                        latencies_ms.append(elapsed_ms)
                sum_after, count_after = publish_histogram((await client.get(metrics)).text)
                publish_mean_ms = (
                    (sum_after - sum_before) / (count_after - count_before) * 1000
                    if count_after > count_before
                    else float("nan")
                )
                results[fmt] = {
                    "post": percentiles(latencies_ms),
                    "publish_mean_ms_incl_warmup": publish_mean_ms,
                    "events_per_s": size * len(latencies_ms) / (sum(latencies_ms) / 1000),
                }
        return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_publish", description=__doc__)
    parser.add_argument("--batches", type=int, default=50, help="timed batches per format")
    parser.add_argument("--size", type=int, default=100, help="events per batch")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.batches, args.size))
    print_table(
        f"POST /v1/events, {args.size}-event batches, sequential, {args.batches} per format",
        ["format", "p50 ms", "p95 ms", "p99 ms", "max ms", "publish mean ms", "events/s"],
        [
            [
                fmt,
                figures["post"]["p50_ms"],
                figures["post"]["p95_ms"],
                figures["post"]["p99_ms"],
                figures["post"]["max_ms"],
                figures["publish_mean_ms_incl_warmup"],
                figures["events_per_s"],
            ]
            for fmt, figures in results.items()
        ],
    )
    path = write_results(NAME, {"batch_size": args.size, "batches": args.batches, **results})
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
