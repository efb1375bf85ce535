"""Run one processor as a Faust worker: ``python -m processors mastery``.

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
from processors.app import create_app  # noqa: E402
from processors.base import Processor, attach  # noqa: E402
from processors.mastery import MasteryProcessor  # noqa: E402

# Processor name -> factory; later processors register here.
PROCESSORS: dict[str, Callable[[Settings], Processor[Any]]] = {
    "mastery": MasteryProcessor,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m processors", description=__doc__)
    parser.add_argument("processor", choices=sorted(PROCESSORS), help="which processor to run")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    app = create_app(settings, args.processor)
    attach(app, PROCESSORS[args.processor](settings), settings, started_at=PROCESS_STARTED_AT)
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
