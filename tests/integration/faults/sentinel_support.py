"""A Redis Sentinel group on loopback for the fault tests: primary, replica, three sentinels.

:func:`sentinel_group` starts Debian's ``redis-server`` twice (a primary and its
replica) and ``redis-sentinel`` three times, each on a free port with its own config
file in a temporary folder, waits until the replica is in sync and every sentinel
knows the replica and the two other sentinels, and kills every process at the end.

The sentinels declare the primary down after :data:`DOWN_AFTER_MS` without an
answer, so a failover completes within a few seconds of a kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from infra.services import free_port, wait_for_port

SERVICE = "learnstream"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
READY_TIMEOUT_S = 30.0


@dataclass
class RedisProcess:
    """One redis-server or redis-sentinel process of the group."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def kill(self) -> None:
        """SIGKILL (no shutdown, no last replication): a crash of the machine, as Redis sees it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class SentinelGroup:
    """The running group; :attr:`sentinel_setting` is the value of ``redis_sentinels``."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess] = field(default_factory=list)

    @property
    def sentinel_setting(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def primary_port(self) -> int:
        """The port of the primary as the first answering sentinel names it now."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    _host, port = client.sentinel_get_master_addr_by_name(SERVICE)
                    return int(port)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answered")

    def wait_for_failover(self, *, timeout_s: float) -> float:
        """Block until every live sentinel names the replica as primary; seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            ports = set()
            for sentinel in self.sentinels:
                try:
                    with sentinel.client() as client:
                        ports.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
                except redis.RedisError:
                    ports.add(-1)
            if ports == {self.replica.port}:
                with self.replica.client() as client:
                    if client.info("replication")["role"] == "master":
                        return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"no failover to port {self.replica.port} within {timeout_s} s")


def _require_binaries() -> None:
    missing = [b for b in ("redis-server", "redis-sentinel") if shutil.which(b) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: `make setup-ops-tools` installs "
            "Debian's redis-server and redis-sentinel"
        )


def _start(name: str, folder: Path, binary: str, config: str) -> RedisProcess:
    port = free_port()
    config_path = folder / f"{name}.conf"
    log_path = folder / f"{name}.log"
    config_path.write_text(
        f'port {port}\nbind 127.0.0.1\ndir "{folder}"\nlogfile "{log_path}"\n'
        f'save ""\nappendonly no\n' + config.format(port=port)
    )
    process = subprocess.Popen(
        [binary, str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    started = RedisProcess(name=name, port=port, process=process, log_path=log_path)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=10, what=f"{name} (log: {log_path})")
    except Exception:
        started.kill()
        raise
    return started


def _wait_ready(group: SentinelGroup) -> None:
    """Until the replica is in sync and each sentinel sees the replica and two peers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with group.replica.client() as client:
            linked = client.info("replication").get("master_link_status") == "up"
        seen = []
        for sentinel in group.sentinels:
            with sentinel.client() as client:
                master = client.sentinel_master(SERVICE)
                replicas = client.sentinel_slaves(SERVICE)
            seen.append(
                int(master["num-other-sentinels"]) == len(group.sentinels) - 1
                and any(r["port"] == group.replica.port for r in replicas)
            )
        if linked and all(seen):
            return
        time.sleep(0.1)
    raise AssertionError(f"the sentinel group did not settle in {READY_TIMEOUT_S} s")


@contextmanager
def sentinel_group(folder: Path) -> Iterator[SentinelGroup]:
    """A primary, one replica and three sentinels (quorum 2) on free loopback ports."""
    _require_binaries()
    started: list[RedisProcess] = []
    try:
        primary = _start("primary", folder, "redis-server", "")
        started.append(primary)
        replica = _start("replica", folder, "redis-server", f"replicaof 127.0.0.1 {primary.port}\n")
        started.append(replica)
        group = SentinelGroup(primary=primary, replica=replica)
        for index in range(3):
            sentinel = _start(
                f"sentinel-{index}",
                folder,
                "redis-sentinel",
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n",
            )
            started.append(sentinel)
            group.sentinels.append(sentinel)
        _wait_ready(group)
        yield group
    finally:
        for process in started:
            if process.process.poll() is None:
                process.resume()  # a SIGSTOPped process still dies on SIGKILL; be tidy
            process.kill()
