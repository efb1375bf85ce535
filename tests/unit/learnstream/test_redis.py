"""learnstream.redis builds the right client from settings, without connecting anywhere:
one server or Sentinel, a bounded (blocking) pool on request, the URL's database and
credentials kept in Sentinel mode, and a refused malformed sentinel list."""

from __future__ import annotations

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from learnstream.exceptions import ConfigurationError
from learnstream.redis import (
    BlockingSentinelConnectionPool,
    SentinelRedis,
    redis_client,
    sentinel_addresses,
    uses_sentinel,
)
from learnstream.settings import Settings

SENTINELS = "10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381"


def test_sentinel_list_is_parsed_and_empty_means_one_server() -> None:
    assert sentinel_addresses(Settings(redis_sentinels=SENTINELS)) == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26381),
    ]
    assert sentinel_addresses(Settings()) == []
    assert not uses_sentinel(Settings(redis_sentinels=" , "))


@pytest.mark.parametrize("bad", ["sentinel-1", "sentinel-1:", ":26379", "host:port", "h:70000"])
def test_a_malformed_sentinel_entry_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="LEARNSTREAM_REDIS_SENTINELS"):
        sentinel_addresses(Settings(redis_sentinels=f"10.0.0.1:26379,{bad}"))


async def test_one_server_client_uses_the_url_and_the_pool_bound() -> None:
    settings = Settings(redis_url="redis://:secret@10.1.1.1:6380/3")
    plain = redis_client(settings, socket_timeout_s=2, connect_timeout_s=1)
    bounded = redis_client(settings, max_connections=7, pool_timeout_s=0.5)
    try:
        assert type(plain) is Redis
        pool = plain.connection_pool
        assert type(pool) is ConnectionPool
        assert pool.connection_kwargs["host"] == "10.1.1.1"
        assert pool.connection_kwargs["port"] == 6380
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["password"] == "secret"
        assert pool.connection_kwargs["socket_timeout"] == 2
        assert pool.connection_kwargs["socket_connect_timeout"] == 1
        assert isinstance(bounded.connection_pool, BlockingConnectionPool)
        assert bounded.connection_pool.max_connections == 7
        assert bounded.connection_pool.timeout == 0.5
    finally:
        await plain.aclose()
        await bounded.aclose()


async def test_sentinel_client_asks_the_sentinels_and_keeps_the_urls_database() -> None:
    settings = Settings(
        redis_url="rediss://:secret@ignored.example:1/2",
        redis_sentinels=SENTINELS,
        redis_sentinel_service="school",
    )
    client = redis_client(settings, socket_timeout_s=2, max_connections=5, pool_timeout_s=1)
    try:
        assert isinstance(client, SentinelRedis)
        pool = client.connection_pool
        assert isinstance(pool, BlockingSentinelConnectionPool)
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "school"
        assert pool.max_connections == 5
        kwargs = pool.connection_kwargs
        assert kwargs["db"] == 2
        assert kwargs["password"] == "secret"
        assert "host" not in kwargs  # the primary's address comes from the sentinels
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"  # rediss://
        assert client.sentinel_manager is not None
        sentinels = client.sentinel_manager.sentinels
        assert [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ] == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
        assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2
    finally:
        await client.aclose()
