"""Optimistic versions on the learner views: an out-of-date writer fails loudly.

A writer reads rows (and their versions), another writer changes them, and the first
then writes what it computed from its old read: the write must raise StaleWrite,
leave the other writer's rows untouched, and count in
``learnstream_processor_stale_writes_total``. The same holds for a row the first
writer read as absent and the other one created meanwhile. StaleWrite is retried by
the batch runner like a serialization failure (a fresh read fixes it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import REGISTRY

from learnstream.views.calibration import ItemParams
from processors.base import is_transient
from processors.events import Attempt
from processors.exceptions import StaleWrite
from processors.learner_state import (
    LearnerParameters,
    learner_changes,
    load_states,
    store_changes,
)

T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
PARAMETERS = LearnerParameters(
    bkt={}, items={("t", "item"): ItemParams(1.2, 0.3, 0.0)}, scheduler={}
)


def attempt(correct: bool, minute: int) -> Attempt:
    return Attempt(
        event_id=str(uuid.uuid4()),
        tenant_id="t",
        user_id="u",
        session_id="",
        skill_ids=("s",),
        correct=correct,
        score=float(correct),
        occurred_at=T0.replace(minute=minute),
        item_id="item",
    )


async def apply(conn: asyncpg.Connection, attempts: list[Attempt]) -> None:
    states = await load_states(conn, attempts)
    changes = learner_changes(attempts, states, PARAMETERS, mastery_topic="m")
    await store_changes(conn, changes, states, processor="learner_state")


def stale_writes(view: str) -> float:
    value = REGISTRY.get_sample_value(
        "learnstream_processor_stale_writes_total", {"processor": "learner_state", "view": view}
    )
    return value or 0.0


async def views(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    mastery = await pool.fetch("SELECT p_mastery, attempts, version FROM skill_mastery")
    ability = await pool.fetch("SELECT ability, n_responses, version FROM learner_ability")
    reviews = await pool.fetch("SELECT reviews, due_at, version FROM review_schedule")
    return [tuple(r) for r in [*mastery, *ability, *reviews]]


async def test_a_write_from_an_outdated_read_raises_and_changes_nothing(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        await apply(conn, [attempt(True, 0)])
    # The out-of-date writer reads now ...
    late = attempt(False, 5)
    async with db_pool.acquire() as conn, conn.transaction():
        old_states = await load_states(conn, [late])
    # ... another writer moves every row on ...
    async with db_pool.acquire() as conn, conn.transaction():
        await apply(conn, [attempt(True, 3)])
    moved_on = await views(db_pool)
    assert {row[-1] for row in moved_on} == {2}
    before = stale_writes("skill_mastery")
    # ... and the first writer writes what it computed from its old read.
    changes = learner_changes([late], old_states, PARAMETERS, mastery_topic="m")
    async with db_pool.acquire() as conn:
        with pytest.raises(StaleWrite, match="skill_mastery: 1 of 1 rows changed"):
            async with conn.transaction():
                await store_changes(conn, changes, old_states, processor="learner_state")
    assert await views(db_pool) == moved_on
    assert stale_writes("skill_mastery") == before + 1


async def test_creating_a_row_someone_else_created_meanwhile_raises(
    db_pool: asyncpg.Pool,
) -> None:
    first = attempt(True, 0)
    async with db_pool.acquire() as conn, conn.transaction():
        absent = await load_states(conn, [first])  # nothing stored yet
    async with db_pool.acquire() as conn, conn.transaction():
        await apply(conn, [attempt(False, 1)])
    created = await views(db_pool)
    changes = learner_changes([first], absent, PARAMETERS, mastery_topic="m")
    async with db_pool.acquire() as conn:
        with pytest.raises(StaleWrite):
            async with conn.transaction():
                await store_changes(conn, changes, absent, processor="learner_state")
    assert await views(db_pool) == created


def test_a_stale_write_is_retried_like_a_serialization_failure() -> None:
    assert is_transient(StaleWrite("skill_mastery: 1 of 1 rows changed"))
