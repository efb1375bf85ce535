"""``make monitoring`` for real: Prometheus (Debian's binary) started by
:func:`infra.monitoring.start_prometheus` scrapes real services started as processes
(ingest, the read API and one processor, each as ``make demo`` starts them) and reports
every target up through its ``/api/v1/targets``, with the services' metrics stored
and the rules loaded.

Every port is a free one and the scrape interval 1 s, so the test is bounded by the
services' start-up (importing the processors takes the longest).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from infra import demo, services
from infra.monitoring import Prometheus, scrape_targets, start_prometheus
from learnstream.settings import Settings

PROCESSOR = "aggregates"
STARTUP_TIMEOUT_S = 180.0


def own_settings(settings: Settings, run_dir: Path) -> Settings:
    """``settings`` with free ports for every service and Prometheus, and its own run_dir."""
    update: dict[str, object] = {
        "run_dir": run_dir,
        "ingest_port": services.free_port(),
        "api_port": services.free_port(),
        "processor_web_port": services.free_port(),
        "prometheus_port": services.free_port(),
    }
    for field in ("ingest_metrics_port", "api_metrics_port"):  # where /metrics has its own port
        if field in Settings.model_fields:
            update[field] = services.free_port()
    return settings.model_copy(update=update)


async def targets_when_all_up(prometheus: Prometheus, expected: int) -> list[dict[str, object]]:
    """Prometheus' active targets once ``expected`` of them are up (or fail with their errors)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    active: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=5) as client:
        while time.monotonic() < deadline:
            answer = (await client.get("/api/v1/targets")).json()
            active = answer["data"]["activeTargets"]
            if len(active) == expected and all(t["health"] == "up" for t in active):
                return active
            await asyncio.sleep(1)
    raise AssertionError(
        "targets not all up: "
        + "; ".join(f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in active)
    )


async def test_prometheus_scrapes_ingest_api_and_a_processor(
    topics: Settings, migrated_database: Settings, tmp_path: Path
) -> None:
    settings = own_settings(topics, tmp_path)
    targets = scrape_targets(settings, processors=(PROCESSOR,))
    try:
        demo.start_process(settings, "ingest", ["ingest"])
        demo.start_process(settings, "api", ["api"])
        demo.start_process(
            settings,
            f"processor-{PROCESSOR}",
            ["processors", PROCESSOR, "--web-port", str(settings.processor_web_port)],
        )
        prometheus = await asyncio.to_thread(
            start_prometheus, settings, targets, scrape_interval_s=1.0
        )
        active = await targets_when_all_up(prometheus, expected=len(targets))
        # /metrics is served on its own port, outside the apps, so a scrape counts no
        # request: serve one on each public port, as traffic would.
        async with httpx.AsyncClient(timeout=5) as client:
            for port in (settings.ingest_port, settings.api_port):
                await client.get(f"http://127.0.0.1:{port}/healthz")
        wanted = {"learnstream-ingest", "learnstream-api", "learnstream-processors"}
        async with httpx.AsyncClient(base_url=prometheus.url, timeout=5) as client:
            # Samples of each service's own metrics reached the store (a scrape or two on).
            deadline = time.monotonic() + 30
            while True:
                stored = await client.get(
                    "/api/v1/query",
                    params={"query": 'count by (job) ({__name__=~"learnstream_.+"})'},
                )
                found = {s["metric"]["job"] for s in stored.json()["data"]["result"]}
                if found >= wanted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            rules = (await client.get("/api/v1/rules")).json()
    finally:
        stopped = demo.stop_all(settings)

    assert {t["scrapeUrl"] for t in active} == {f"http://{t.address}/metrics" for t in targets}
    assert {t["labels"]["service"] for t in active} == {  # type: ignore[index]
        "ingest",
        "api",
        f"processor-{PROCESSOR}",
    }
    jobs = {sample["metric"]["job"] for sample in stored.json()["data"]["result"]}
    assert jobs == wanted
    loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert {"LearnstreamPartitionStalled", "learnstream:ingest_5xx:ratio_rate5m"} <= loaded
    assert "prometheus" in stopped  # `make stop` ends Prometheus with the services
