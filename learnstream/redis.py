"""The one place Redis clients are built: one server, or a primary found through Sentinel.

Every process (ingest, the read API, the processors' learner cache, the CLIs) gets
its client from :func:`redis_client`, so the choice between the two modes is made
once, from settings:

* ``redis_sentinels`` empty (the default): ``redis_url`` names the one server.
* ``redis_sentinels`` = ``host:port,host:port,...``: redis-py's Sentinel client asks
  those sentinels for the current primary of ``redis_sentinel_service`` before each
  new connection. When the primary fails and the sentinels promote a replica, pooled
  connections to the old one fail (the command fails, the caller answers 503 as for
  any Redis outage) and the next connection goes to the new primary. ``redis_url``
  then gives only the database number, user name, password and TLS (``rediss://``);
  its host and port are ignored.

Replication is asynchronous: a write the old primary acknowledged but had not yet
sent to a replica is lost in a failover. :func:`wait_for_replicas` lets a caller
that cannot afford that (ingest's dedup claims, ingest/dedup.py) wait until replicas
have its writes (WAIT, on the connection that wrote); docs/operations.md ("Redis
Sentinel") explains the window that remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.retry import Retry

from learnstream.exceptions import ConfigurationError
from learnstream.settings import Settings


class SentinelRedis(Redis):
    """A client of the primary that Sentinel names; closing it closes the sentinel clients too."""

    # Not "sentinel": Redis already has a method of that name (the SENTINEL command).
    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's pool and the connections to the sentinels."""
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.sentinel_manager is not None:
                await self.sentinel_manager.aclose()


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool with BlockingConnectionPool's bound: a full pool waits, then fails."""


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """``redis_sentinels`` as (host, port) pairs; empty when Sentinel is not used.

    Raises ConfigurationError naming the setting when an entry is not ``host:port``.
    """
    addresses: list[tuple[str, int]] = []
    for entry in settings.redis_sentinels.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"LEARNSTREAM_REDIS_SENTINELS: {entry!r} is not host:port "
                "(a comma-separated list of the sentinels' addresses)"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def uses_sentinel(settings: Settings) -> bool:
    """True when the primary is found through Sentinel (``redis_sentinels`` is set)."""
    return bool(sentinel_addresses(settings))


def redis_client(
    settings: Settings,
    *,
    socket_timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
    retry: Retry | None = None,
    max_connections: int | None = None,
    pool_timeout_s: float | None = None,
    decode_responses: bool = False,
) -> Redis:
    """A Redis client for ``settings`` (one server, or the Sentinel-named primary).

    ``socket_timeout_s`` / ``connect_timeout_s``: seconds a command / a connection
    attempt may take (None: wait for the OS). ``retry``: redis-py's retry policy
    (None: redis-py's default). ``max_connections`` bounds the pool (None: unbounded);
    with ``pool_timeout_s`` as well, a caller finding every connection busy waits up to
    that many seconds for one (BlockingConnectionPool) instead of failing at once.
    The caller closes the client with ``aclose()``.
    """
    options: dict[str, Any] = {"decode_responses": decode_responses}
    if socket_timeout_s is not None:
        options["socket_timeout"] = socket_timeout_s
    if connect_timeout_s is not None:
        options["socket_connect_timeout"] = connect_timeout_s
    if retry is not None:
        options["retry"] = retry
    if max_connections is not None:
        options["max_connections"] = max_connections
    blocking = max_connections is not None and pool_timeout_s is not None
    if blocking:
        options["timeout"] = pool_timeout_s

    addresses = sentinel_addresses(settings)
    if not addresses:
        pool_class: type[ConnectionPool] = BlockingConnectionPool if blocking else ConnectionPool
        return Redis.from_pool(pool_class.from_url(settings.redis_url, **options))

    # The URL's database, credentials and TLS apply to the primary; its host does not.
    url_options: dict[str, Any] = dict(parse_url(settings.redis_url))
    url_options.pop("host", None)
    url_options.pop("port", None)
    if url_options.pop("connection_class", None) is SSLConnection:
        url_options["ssl"] = True
    sentinel_options: dict[str, Any] = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    if settings.redis_sentinel_password is not None:
        sentinel_options["password"] = settings.redis_sentinel_password.get_secret_value()
    sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    client = sentinel.master_for(
        settings.redis_sentinel_service,
        redis_class=SentinelRedis,
        connection_pool_class=(
            BlockingSentinelConnectionPool if blocking else SentinelConnectionPool
        ),
        **url_options,
        **options,
    )
    assert isinstance(client, SentinelRedis)
    client.sentinel_manager = sentinel
    return client


async def wait_for_replicas(
    client: Redis,
    script: AsyncScript,
    *,
    keys: Sequence[str],
    args: Sequence[str | bytes | int | float],
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """Run ``script`` and then ``WAIT replicas timeout_ms`` on the same connection.

    Returns the script's result and how many replicas acknowledged every write made
    so far on that connection (WAIT counts per connection, hence the pipeline: one
    round trip, one connection). Fewer than ``replicas`` means the writes may be lost
    if the primary fails before it sends them. The script is loaded once if Redis
    does not know it (NOSCRIPT, e.g. after a restart or a failover).
    """
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            result, acknowledged = await pipe.execute(raise_on_error=False)
        if isinstance(result, NoScriptError) and attempt == 0:
            await client.script_load(script.script)
            continue
        for answer in (result, acknowledged):
            if isinstance(answer, Exception):
                raise answer
        return result, int(acknowledged)
    raise AssertionError("unreachable: the second attempt returns or raises")
