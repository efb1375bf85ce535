"""``python -m ingest``: serve the ingest API with uvicorn on ``ingest_host:ingest_port``.

With ``ingest_workers`` > 1, uvicorn runs that many worker processes on the one
port (each builds its app with :func:`worker_app`): the service keeps no state in
the process (dedup claims live in Redis), so one worker per core scales the
per-event Python work. Prometheus metrics are then kept in prometheus_client's
multiprocess mode, in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder
unless set; emptied at start), so ``/metrics`` sums every worker (ingest/metrics.py).
``/metrics`` is served on ``metrics_host:ingest_metrics_port`` only, which every
worker shares with the public port (learnstream.asgi.serve).

Before serving, the objects that exist for the whole process (modules, the app,
descriptors: ~290,000 tracked by the garbage collector) are moved out of its reach
with ``gc.freeze()`` (:func:`freeze_startup_heap`): each full collection used to scan
all of them, which cost ~24 µs of CPU per event at batches of 1,000 in-process
(docs/performance.md). The events of a request are freed by reference counting as
before; only the collector's scans got shorter.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from ingest.app import create_app
from learnstream.asgi import serve
from learnstream.logging import configure_logging
from learnstream.settings import get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn factory ``ingest.__main__:worker_app``)."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections
    (``gc.freeze``): they live as long as the process, and scanning them again at
    each full collection was a quarter of ingest's CPU per event at large batches."""
    gc.collect()
    gc.freeze()


def prepare_metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics folder (set in the env), emptied of a previous run's
    files, and whether it is a temporary one of this run (removed at the end).

    Must run before a worker imports prometheus_client (workers are spawned, so they
    read the environment this process leaves them).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    folder = (
        Path(configured)
        if configured
        else Path(tempfile.mkdtemp(prefix="learnstream-ingest-metrics-"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # counts of a previous run would be added in
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder, not configured


def main() -> None:
    """Run the ingest service until interrupted."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    serve_ingest = partial(
        serve,
        host=settings.ingest_host,
        port=settings.ingest_port,
        metrics_host=settings.metrics_host,
        metrics_port=settings.ingest_metrics_port,
        trusted_proxies=settings.trusted_proxies,
    )
    if settings.ingest_workers == 1:
        app = create_app(settings)
        freeze_startup_heap()
        serve_ingest(app)
        return
    folder, temporary = prepare_metrics_dir()
    try:
        serve_ingest("ingest.__main__:worker_app", workers=settings.ingest_workers)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
