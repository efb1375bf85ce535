"""``skill_mastery`` and ``attempts``: each learner's per-skill BKT mastery and raw history.

Written by the learner-state processor (one BKT step per skill and attempt) and, for
skills a learner has no row for yet, by placement seeds; read by the mastery API,
the dashboards and the hot cache. Rows carry a ``version`` (:mod:`.versioned`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from learnstream.db import Queryable
from learnstream.views.versioned import VersionedView


class MasteryKey(NamedTuple):
    """One learner's one skill."""

    tenant_id: str
    user_id: str
    skill_id: str


@dataclass(frozen=True, slots=True)
class MasteryState:
    """One row of ``skill_mastery`` (the columns the update needs)."""

    p_mastery: float  # P(mastered), in [0, 1]
    attempts: int  # answers counted on this skill, >= 0
    correct: int  # fully correct answers among them, >= 0
    last_event_id: str
    last_attempt_at: datetime  # UTC


MASTERY_VIEW = VersionedView(
    "skill_mastery",
    keys=(("tenant_id", "text"), ("user_id", "text"), ("skill_id", "text")),
    values=(
        ("p_mastery", "float8"),
        ("attempts", "int"),
        ("correct", "int"),
        ("last_event_id", "uuid"),
        ("last_attempt_at", "timestamptz"),
    ),
)

_LOCK_MASTERY = """
    SELECT s.tenant_id, s.user_id, s.skill_id, s.p_mastery, s.attempts, s.correct,
           s.last_event_id, s.last_attempt_at, s.version
    FROM skill_mastery AS s
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, skill_id)
      USING (tenant_id, user_id, skill_id)
    ORDER BY s.tenant_id, s.user_id, s.skill_id
    FOR UPDATE OF s
"""
_SEED_MASTERY = """
    INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                               last_event_id, last_attempt_at)
    SELECT $1, $2, s.skill_id, s.p_mastery, s.attempts, s.correct, $3, $4
    FROM unnest($5::text[], $6::float8[], $7::int[], $8::int[])
      AS s(skill_id, p_mastery, attempts, correct)
    ON CONFLICT (tenant_id, user_id, skill_id) DO NOTHING
    RETURNING skill_id
"""


async def lock_mastery(
    conn: Queryable, keys: Sequence[MasteryKey]
) -> tuple[dict[MasteryKey, MasteryState], dict[MasteryKey, int]]:
    """Read (``FOR UPDATE``) the stored rows of ``keys``; their states and versions."""
    states: dict[MasteryKey, MasteryState] = {}
    versions: dict[MasteryKey, int] = {}
    wanted = sorted(set(keys))
    for row in await conn.fetch(_LOCK_MASTERY, *zip(*wanted, strict=True)) if wanted else []:
        key = MasteryKey(row["tenant_id"], row["user_id"], row["skill_id"])
        states[key] = MasteryState(
            p_mastery=row["p_mastery"],
            attempts=row["attempts"],
            correct=row["correct"],
            last_event_id=str(row["last_event_id"]),
            last_attempt_at=row["last_attempt_at"],
        )
        versions[key] = int(row["version"])
    return states, versions


def mastery_row(key: MasteryKey, state: MasteryState) -> tuple[object, ...]:
    """``state`` as the key and value columns of :data:`MASTERY_VIEW`."""
    return (
        *key,
        state.p_mastery,
        state.attempts,
        state.correct,
        state.last_event_id,
        state.last_attempt_at,
    )


@dataclass(frozen=True, slots=True)
class MasterySeed:
    """A skill's starting mastery for a learner without a row: P in [0, 1], counts >= 0."""

    skill_id: str
    p_mastery: float
    attempts: int
    correct: int


async def seed_mastery(
    conn: Queryable,
    *,
    tenant_id: str,
    user_id: str,
    seeds: Sequence[MasterySeed],
    event_id: str,
    at: datetime,
) -> list[str]:
    """Insert the ``seeds`` of skills without a row (version 1); the skills seeded.

    Rows that exist are evidence from practice and are left alone.
    """
    rows = await conn.fetch(
        _SEED_MASTERY,
        tenant_id,
        user_id,
        event_id,
        at,
        [s.skill_id for s in seeds],
        [s.p_mastery for s in seeds],
        [s.attempts for s in seeds],
        [s.correct for s in seeds],
    )
    return [r["skill_id"] for r in rows]


_LEARNER_MASTERY = """
    SELECT skill_id, p_mastery, attempts, correct, last_attempt_at, updated_at
    FROM skill_mastery WHERE tenant_id = $1 AND user_id = $2
    ORDER BY skill_id
"""
_HAS_MASTERY = """
    SELECT EXISTS (SELECT 1 FROM skill_mastery WHERE tenant_id = $1 AND user_id = $2)
"""


async def learner_rows(db: Queryable, *, tenant_id: str, user_id: str) -> list[Any]:
    """Every ``skill_mastery`` row of one learner by skill_id (skill_id, p_mastery,
    attempts, correct, last_attempt_at, updated_at); empty if none."""
    return await db.fetch(_LEARNER_MASTERY, tenant_id, user_id)


_LEARNERS_MASTERY = """
    SELECT user_id, skill_id, p_mastery, attempts, correct, last_attempt_at, updated_at
    FROM skill_mastery WHERE tenant_id = $1 AND user_id = ANY($2::text[])
    ORDER BY user_id, skill_id
"""


async def learners_rows(db: Queryable, *, tenant_id: str, user_ids: Sequence[str]) -> list[Any]:
    """The ``skill_mastery`` rows of several learners of one tenant (a class), by user_id
    then skill_id: user_id, skill_id, p_mastery, attempts, correct, last_attempt_at,
    updated_at."""
    return await db.fetch(_LEARNERS_MASTERY, tenant_id, list(user_ids))


async def has_mastery(db: Queryable, *, tenant_id: str, user_id: str) -> bool:
    """True if the learner has at least one ``skill_mastery`` row."""
    return bool(await db.fetchval(_HAS_MASTERY, tenant_id, user_id))


# --- attempts (raw history) -------------------------------------------------------------


class AttemptFacts(Protocol):
    """The fields of an attempt the ``attempts`` table keeps (an AttemptEvent, validated)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def item_version(self) -> int | None: ...
    @property
    def skill_ids(self) -> tuple[str, ...]: ...
    @property
    def correct(self) -> bool: ...
    @property
    def score(self) -> float: ...
    @property
    def response_time_ms(self) -> int | None: ...
    @property
    def hint_count(self) -> int: ...
    @property
    def attempt_number(self) -> int | None: ...
    @property
    def context(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime | None: ...


class SourcePosition(NamedTuple):
    """Where an event was read: topic, partition, offset."""

    topic: str
    partition: int
    offset: int


_INSERT_ATTEMPTS = """
    INSERT INTO attempts (tenant_id, event_id, user_id, session_id, item_id, item_version,
                          skill_ids, correct, score, response_time_ms, hint_count,
                          attempt_number, context, occurred_at, received_at, source_topic,
                          kafka_partition, kafka_offset)
    SELECT r.tenant_id, r.event_id, r.user_id, r.session_id, r.item_id, r.item_version,
           string_to_array(r.skill_ids, chr(31)), r.correct, r.score, r.response_time_ms,
           r.hint_count, r.attempt_number, r.context, r.occurred_at, r.received_at,
           r.source_topic, r.kafka_partition, r.kafka_offset
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::text[], $8::bool[], $9::float8[], $10::bigint[], $11::int[], $12::int[],
                $13::text[], $14::timestamptz[], $15::timestamptz[], $16::text[], $17::int[],
                $18::bigint[])
      AS r(tenant_id, event_id, user_id, session_id, item_id, item_version, skill_ids,
           correct, score, response_time_ms, hint_count, attempt_number, context,
           occurred_at, received_at, source_topic, kafka_partition, kafka_offset)
    ON CONFLICT (tenant_id, event_id, occurred_at) DO NOTHING
    RETURNING event_id
"""
# Skill ids travel as one text per row joined by the ASCII unit separator, because
# unnest() of a two-dimensional array would flatten it.
_SKILL_SEPARATOR = "\x1f"


async def insert_attempts(
    conn: Queryable, events: Sequence[AttemptFacts], sources: Sequence[SourcePosition]
) -> set[str]:
    """Record ``events`` (read at ``sources``); the event_ids that were not recorded before.

    The monthly partitions of their ``occurred_at`` must exist (the SQL function
    ``attempts_ensure_partition``, called outside the writer's transaction).
    """
    rows = await conn.fetch(
        _INSERT_ATTEMPTS,
        [e.tenant_id for e in events],
        [e.event_id for e in events],
        [e.user_id for e in events],
        [e.session_id for e in events],
        [e.item_id for e in events],
        [e.item_version for e in events],
        [_SKILL_SEPARATOR.join(e.skill_ids) for e in events],
        [e.correct for e in events],
        [e.score for e in events],
        [e.response_time_ms for e in events],
        [e.hint_count for e in events],
        [e.attempt_number for e in events],
        [e.context for e in events],
        [e.occurred_at for e in events],
        [e.received_at for e in events],
        [s.topic for s in sources],
        [s.partition for s in sources],
        [s.offset for s in sources],
    )
    return {str(row["event_id"]) for row in rows}


# The learner cache's read of current rows (with their versions), keyed by
# (tenant_id, user_id, skill_id) arrays.
CACHE_READ = """
    SELECT s.tenant_id, s.user_id, s.skill_id, s.p_mastery, s.attempts, s.correct,
           s.last_attempt_at, s.version
    FROM skill_mastery AS s
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, skill_id)
      USING (tenant_id, user_id, skill_id)
"""
