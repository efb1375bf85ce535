"""Monitoring: a local Prometheus for the demo, and the files a deployment mounts.

``python -m infra.monitoring`` (``make monitoring``) writes ``<run_dir>/prometheus.yml``
with one scrape target per service of the demo (ingest, the read API, each processor's
web port: ``processor_web_port`` + its index in :data:`infra.demo.PROCESSORS`), built
from settings so the ports are the ones the services really use, and starts Debian's
``prometheus`` on ``127.0.0.1:<prometheus_port>`` with the alerting and recording rules
of ``infra/monitoring/rules/``. Its PID file lies in ``run_dir``, so ``make stop``
ends it with the services.

The same folder holds what the compose deployment mounts: ``prometheus.yml`` (targets by
service name), ``rules/``, and Grafana's ``grafana/provisioning`` and
``grafana/dashboards``. docs/operations.md, "Monitoring", explains every alert.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from infra import demo, services
from learnstream.exceptions import ConfigurationError, ServiceUnavailableError
from learnstream.settings import Settings

MONITORING_DIR = Path(__file__).resolve().parent
RULES_DIR = MONITORING_DIR / "rules"
# Seconds between scrapes (and rule evaluations) of the local Prometheus.
DEFAULT_SCRAPE_INTERVAL_S = 15.0
# How long the local Prometheus keeps its samples (it is a demo, not an archive).
RETENTION = "2d"


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One ``/metrics`` endpoint: its job (``learnstream-<kind>``), address and service."""

    job: str
    address: str  # host:port
    service: str  # ingest, api, processor-<name>


@dataclass(frozen=True, slots=True)
class Prometheus:
    """A Prometheus process started by :func:`start_prometheus`."""

    pid: int
    url: str
    config_path: Path
    log_path: Path


def _metrics_port(settings: Settings, service: str) -> int:
    # The APIs serve /metrics on a port of their own, never on the public one.
    return settings.api_metrics_port if service == "api" else settings.ingest_metrics_port


def _metrics_host(settings: Settings) -> str:
    host = settings.metrics_host
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


def scrape_targets(
    settings: Settings, processors: Sequence[str] = demo.PROCESSORS
) -> list[ScrapeTarget]:
    """The endpoints of the local services that ``make demo`` starts, from ``settings``.

    Processor ports are ``processor_web_port`` + the processor's index in
    ``processors`` (as :func:`infra.demo.start_pipeline` assigns them); none when
    ``processor_web_port`` is 0 (web servers off).
    """
    host = _metrics_host(settings)
    targets = [
        ScrapeTarget("learnstream-ingest", f"{host}:{_metrics_port(settings, 'ingest')}", "ingest"),
        ScrapeTarget("learnstream-api", f"{host}:{_metrics_port(settings, 'api')}", "api"),
    ]
    if settings.processor_web_port:
        targets += [
            ScrapeTarget(
                "learnstream-processors",
                f"127.0.0.1:{settings.processor_web_port + index}",
                f"processor-{name}",
            )
            for index, name in enumerate(processors)
        ]
    return targets


def prometheus_config(
    targets: Sequence[ScrapeTarget], *, scrape_interval_s: float, rules_dir: Path = RULES_DIR
) -> dict[str, object]:
    """The Prometheus configuration scraping ``targets`` with the rules of ``rules_dir``.

    Each target carries a ``service`` label (not ``processor``: the processors' own
    metrics have that label already).
    """
    interval = f"{scrape_interval_s:g}s"
    jobs: dict[str, list[dict[str, object]]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append(
            {"targets": [target.address], "labels": {"service": target.service}}
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": static}
            for job, static in jobs.items()
        ],
    }


def write_config(
    settings: Settings, targets: Sequence[ScrapeTarget], *, scrape_interval_s: float
) -> Path:
    """``<run_dir>/prometheus.yml`` for ``targets`` (JSON, which YAML reads as well)."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path = settings.run_dir / "prometheus.yml"
    config = prometheus_config(targets, scrape_interval_s=scrape_interval_s)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def prometheus_binary() -> str:
    """The ``prometheus`` executable (Debian's package), or ConfigurationError saying how."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise ConfigurationError(
            "prometheus is not installed: `make setup-ops-tools` installs Debian's "
            "prometheus package (apt-get install prometheus)"
        )
    return binary


def start_prometheus(
    settings: Settings,
    targets: Sequence[ScrapeTarget],
    *,
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
    ready_timeout_s: float = 30.0,
) -> Prometheus:
    """Start Prometheus on ``127.0.0.1:<prometheus_port>`` scraping ``targets``; wait until ready.

    Config, data (``prometheus-data/``), log and PID file go to ``run_dir``; a
    Prometheus still running from an earlier start is stopped first.
    """
    binary = prometheus_binary()
    config_path = write_config(settings, targets, scrape_interval_s=scrape_interval_s)
    check = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise ConfigurationError(f"promtool refused {config_path}: {check.stdout}{check.stderr}")
    pid_file = settings.run_dir / "prometheus.pid"
    if pid_file.exists():
        services.stop_pid(int(pid_file.read_text().strip()))
        pid_file.unlink()
    address = f"127.0.0.1:{settings.prometheus_port}"
    if services.port_open("127.0.0.1", settings.prometheus_port):
        raise ServiceUnavailableError(
            f"port {settings.prometheus_port} is already in use; stop what runs there or "
            "choose another LEARNSTREAM_PROMETHEUS_PORT"
        )
    log_path = settings.run_dir / "prometheus.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={settings.run_dir / 'prometheus-data'}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address={address}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the terminal's process group
        )
    pid_file.write_text(str(process.pid))
    url = f"http://{address}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailableError(f"prometheus exited at start; see {log_path}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return Prometheus(process.pid, url, config_path, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    services.stop_pid(process.pid)
    pid_file.unlink(missing_ok=True)
    raise ServiceUnavailableError(f"prometheus not ready after {ready_timeout_s} s; see {log_path}")


def stop_prometheus(settings: Settings) -> bool:
    """Stop the Prometheus whose PID file is in ``run_dir``; True if one was running."""
    pid_file = settings.run_dir / "prometheus.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    return services.stop_pid(pid)
