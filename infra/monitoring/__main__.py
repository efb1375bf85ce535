"""``python -m infra.monitoring [up|down]`` (``make monitoring``): the demo's Prometheus.

``up`` (the default) writes ``<run_dir>/prometheus.yml`` from settings and starts
Prometheus on ``127.0.0.1:<prometheus_port>``; ``down`` stops it (``make stop`` does too).
"""

from __future__ import annotations

import argparse
import sys

from infra.monitoring import (
    DEFAULT_SCRAPE_INTERVAL_S,
    scrape_targets,
    start_prometheus,
    stop_prometheus,
)
from learnstream.exceptions import LearnstreamError
from learnstream.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.monitoring", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["up", "down"], default="up")
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=DEFAULT_SCRAPE_INTERVAL_S,
        help="seconds between scrapes and rule evaluations (default %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "down":
        print("stopped Prometheus" if stop_prometheus(settings) else "no Prometheus was running")
        return
    targets = scrape_targets(settings)
    try:
        prometheus = start_prometheus(settings, targets, scrape_interval_s=args.scrape_interval)
    except LearnstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"Prometheus  {prometheus.url} (pid {prometheus.pid}, log {prometheus.log_path})")
    for target in targets:
        print(f"  scrapes {target.service:<28} http://{target.address}/metrics")
    print(f"Targets     {prometheus.url}/targets   Alerts  {prometheus.url}/alerts")
    print("Start the services with `make demo`; stop everything with `make stop`.")


if __name__ == "__main__":
    main()
