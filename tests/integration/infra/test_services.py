"""Local service control: a fresh (memory-only) broker invalidates stored processor offsets."""

from __future__ import annotations

import asyncpg

from infra import services
from learnstream.settings import Settings


async def test_fresh_broker_forgets_only_its_namespace_offsets(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    ours = settings.topic("attempts")
    await db_pool.executemany(
        "INSERT INTO processor_offsets (consumer_group, topic, partition, next_offset)"
        " VALUES ($1, $2, $3, $4)",
        [("g", ours, 0, 120), ("g", ours, 1, 7), ("g", "other.attempts.v1", 0, 55)],
    )
    assert await services.forget_consumed_offsets(settings) == 2
    remaining = await db_pool.fetch("SELECT topic, next_offset FROM processor_offsets")
    assert [(r["topic"], r["next_offset"]) for r in remaining] == [("other.attempts.v1", 55)]
