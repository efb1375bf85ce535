"""The API-key cache in front of PostgreSQL: hits, expiry, negative entries, bound, outages."""

from __future__ import annotations

import asyncpg
import pytest

from ingest.apikeys import TENANT_ID_PATTERN, CachedApiKeyAuthenticator
from ingest.exceptions import DependencyUnavailableError
from learnstream.apikeys import ApiKey

KEY = ApiKey(key_id="lsk_0123456789ab", tenant_id="school-1", app_name="web")


class CountingLookup:
    """Stands in for the table: a dict of presented keys, counting queries."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.queries = 0
        self.failure: Exception | None = None

    async def __call__(self, presented: str) -> ApiKey | None:
        self.queries += 1
        if self.failure is not None:
            raise self.failure
        return self.keys.get(presented)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(
    lookup: CountingLookup, clock: Clock, ttl_s: float = 30.0, max_entries: int = 100
) -> CachedApiKeyAuthenticator:
    return CachedApiKeyAuthenticator(
        lookup, ttl_s=ttl_s, retry_after_s=2, max_entries=max_entries, clock=clock
    )


async def test_a_key_is_looked_up_once_per_ttl() -> None:
    lookup, clock = CountingLookup({"good": KEY}), Clock()
    auth = authenticator(lookup, clock, ttl_s=30)
    assert await auth.authenticate("good") == KEY
    clock.now += 29.9
    assert await auth.authenticate("good") == KEY
    assert lookup.queries == 1
    clock.now += 0.2  # past the TTL: a revocation would now be seen
    del lookup.keys["good"]
    assert await auth.authenticate("good") is None
    assert lookup.queries == 2


async def test_unknown_keys_are_cached_too() -> None:
    lookup, clock = CountingLookup({}), Clock()
    auth = authenticator(lookup, clock)
    for _ in range(5):
        assert await auth.authenticate("bad") is None
    assert lookup.queries == 1


async def test_ttl_zero_disables_the_cache() -> None:
    lookup, clock = CountingLookup({"good": KEY}), Clock()
    auth = authenticator(lookup, clock, ttl_s=0)
    await auth.authenticate("good")
    await auth.authenticate("good")
    assert lookup.queries == 2


async def test_the_cache_is_bounded_and_drops_the_oldest() -> None:
    lookup, clock = CountingLookup({}), Clock()
    auth = authenticator(lookup, clock, max_entries=3)
    for name in ("a", "b", "c", "d"):  # "d" evicts "a"
        await auth.authenticate(name)
    await auth.authenticate("b")
    assert lookup.queries == 4
    await auth.authenticate("a")
    assert lookup.queries == 5


@pytest.mark.parametrize(
    "failure", [OSError("connection refused"), asyncpg.InterfaceError("pool is closed")]
)
async def test_a_database_outage_is_a_503_naming_postgresql(failure: Exception) -> None:
    lookup, clock = CountingLookup({"good": KEY}), Clock()
    lookup.failure = failure
    with pytest.raises(DependencyUnavailableError) as caught:
        await authenticator(lookup, clock).authenticate("good")
    assert caught.value.status == 503
    assert caught.value.dependency == "postgresql"
    assert caught.value.headers["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("tenant", "ok"),
    [("school-1", True), ("acme.eu_2", True), ("a:b", False), ("", False), ("-x", False)],
)
def test_tenant_ids_cannot_break_the_record_key(tenant: str, ok: bool) -> None:
    assert bool(TENANT_ID_PATTERN.match(tenant)) is ok
