"""Run one processor as a Faust worker: ``python -m processors learner_state``.

Configuration comes from ``LEARNSTREAM_*`` (learnstream.settings); logs are JSON
lines on stderr (learnstream.logging). SIGTERM or Ctrl-C stops the worker
cleanly; a ``kill -9`` loses nothing either (see processors.base).
"""

from __future__ import annotations

import time

# Taken before the heavy imports, so the "first batch committed" log line gives the
# real delay from process start to the first event applied.
PROCESS_STARTED_AT = time.monotonic()

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import faust  # noqa: E402

from learnstream.logging import configure_logging  # noqa: E402
from learnstream.settings import Settings, get_settings  # noqa: E402
from processors.aggregates import AggregatesProcessor  # noqa: E402
from processors.app import create_app  # noqa: E402
from processors.base import Processor  # noqa: E402
from processors.code_submissions import CodeSubmissionsProcessor  # noqa: E402
from processors.fraud import FraudProcessor  # noqa: E402
from processors.gaps import GapsProcessor  # noqa: E402
from processors.lake_sink import LakeSinkProcessor, sink_settings  # noqa: E402
from processors.learner_state import LearnerStateProcessor  # noqa: E402
from processors.notifications import NotificationsProcessor, attach_idle_sweep  # noqa: E402
from processors.predictions import PredictionsProcessor  # noqa: E402
from processors.recommendation_analytics import RecommendationAnalyticsProcessor  # noqa: E402
from processors.recommendations import RecommendationsProcessor  # noqa: E402
from processors.worker import attach  # noqa: E402

# Processor name -> factory; later processors register here.
PROCESSORS: dict[str, Callable[[Settings], Processor[Any]]] = {
    "learner_state": LearnerStateProcessor,
    "code_submissions": CodeSubmissionsProcessor,
    "lake_sink": LakeSinkProcessor,
    "gaps": GapsProcessor,
    "fraud": FraudProcessor,
    "aggregates": AggregatesProcessor,
    "recommendations": RecommendationsProcessor,
    "recommendation_analytics": RecommendationAnalyticsProcessor,
    "notifications": NotificationsProcessor,
    "predictions": PredictionsProcessor,
}

# Processors whose batches differ from the defaults (the lake sink writes big files).
SETTINGS_FOR: dict[str, Callable[[Settings], Settings]] = {"lake_sink": sink_settings}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m processors", description=__doc__)
    parser.add_argument("processor", choices=sorted(PROCESSORS), help="which processor to run")
    parser.add_argument(
        "--web-port",
        type=int,
        default=None,
        help="port of /metrics (default LEARNSTREAM_PROCESSOR_WEB_PORT; 0 disables); "
        "several processors on one host need one port each",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.web_port is not None:
        settings = settings.model_copy(update={"processor_web_port": args.web_port})
    if args.processor in SETTINGS_FOR:
        settings = SETTINGS_FOR[args.processor](settings)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    app = create_app(settings, args.processor)
    processor = PROCESSORS[args.processor](settings)
    attach(app, processor, settings, started_at=PROCESS_STARTED_AT)
    if isinstance(processor, NotificationsProcessor):
        # Review digests for learners who send no events (a wall-clock timer).
        attach_idle_sweep(app, processor, settings)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,  # keep learnstream's JSON logging
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal progress spinner would mix with the JSON log lines
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
