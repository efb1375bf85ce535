"""Input streams for the gaps and fraud integration tests, built from real attempts.

* MasteryUpdated records exactly as the mastery processor emits them for a sequence
  of attempts (its own pure replay), which is what the gaps processor consumes;
* a tenant with a prerequisite graph over the dataset's skills, written through the
  CMS tables (``skills``, ``skill_prerequisites``);
* the assistments 2009 ``as.csv`` log (response times, answer text, classes) as
  AttemptEvents, with its learners and classes in the account tables.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from learnstream.events.v1 import attempt_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, learner_key
from processors.bkt_chain import chain_updates
from processors.events import Attempt, mastery_updated
from tests.integration.processors.crash import stable_uuid
from tests.integration.processors.support import AttemptSpec

AS_CSV = Path("assistments2009_pybkt_as_2020") / "as.csv"


def mastery_records(specs: Sequence[AttemptSpec], *, topic: str) -> list[OutgoingRecord]:
    """One MasteryUpdated per attempt, as the mastery processor would publish them."""
    attempts = [
        Attempt(
            event_id=spec.event_id,
            tenant_id=spec.tenant_id,
            user_id=spec.user_id,
            session_id="",
            skill_ids=tuple(dict.fromkeys(spec.skill_ids)),
            correct=spec.correct,
            score=spec.score if spec.score is not None else float(spec.correct),
            occurred_at=spec.occurred_at,
        )
        for spec in specs
    ]
    _, updates = chain_updates(attempts, {})
    return [mastery_updated(update, topic=topic) for update in updates if update.steps]


def random_prerequisites(skills: Sequence[str], rng: random.Random) -> dict[str, list[str]]:
    """A random DAG: each skill requires up to two skills that come before it."""
    ordered = sorted(skills)
    requires: dict[str, list[str]] = {}
    for index, skill in enumerate(ordered[1:], start=1):
        count = rng.choice([0, 1, 1, 2])
        requires[skill] = sorted(set(rng.sample(ordered[:index], min(count, index))))
    return {skill: edges for skill, edges in requires.items() if edges}


async def write_concept_graph(
    pool: asyncpg.Pool, tenant_id: str, skills: Sequence[str], requires: dict[str, list[str]]
) -> None:
    """The tenant, its skills and prerequisite edges, as the CMS stores them."""
    await pool.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", tenant_id
    )
    await pool.executemany(
        "INSERT INTO skills (tenant_id, skill_id, name) VALUES ($1, $2, $2) ON CONFLICT DO NOTHING",
        [(tenant_id, skill) for skill in skills],
    )
    await pool.executemany(
        "INSERT INTO skill_prerequisites (tenant_id, skill_id, prerequisite_id) "
        "VALUES ($1, $2, $3)",
        [(tenant_id, skill, p) for skill, edges in requires.items() for p in edges],
    )


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One row of as.csv turned into an attempt (ids made UUIDs for the account tables)."""

    event_id: str
    tenant_id: str
    user_id: str  # uuid5 of the dataset's user_id
    class_id: str  # uuid5 of student_class_id
    item_id: str  # problem_id
    skill_id: str
    correct: bool
    response: str  # answer_text
    response_time_ms: int  # ms_first_response (0 when absent or negative)
    occurred_at: datetime

    def key(self) -> bytes:
        return learner_key(self.tenant_id, self.user_id)

    def value(self) -> bytes:
        envelope = envelope_pb2.Envelope(
            event_id=self.event_id, tenant_id=self.tenant_id, user_id=self.user_id
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        return attempt_pb2.AttemptEvent(
            envelope=envelope,
            item_id=self.item_id,
            skill_ids=[self.skill_id],
            correct=self.correct,
            response=self.response,
            response_time_ms=self.response_time_ms,
        ).SerializeToString()


def read_logged_attempts(path: Path, *, tenant_id: str, limit: int) -> list[LoggedAttempt]:
    """The first ``limit`` answers of as.csv in event-time order.

    The file has no timestamps; event time is rebuilt as bench/fraud_false_positives.py
    does: ``order_id / 2`` seconds, pushed forward so that a learner never answers
    sooner than their own response time after their previous answer.
    """
    with path.open(encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first_order = min(int(r["order_id"]) for r in rows)
    start = datetime(2009, 9, 1, tzinfo=UTC)
    clock: dict[str, datetime] = {}
    timed: list[tuple[datetime, int, dict[str, str]]] = []
    for row in sorted(rows, key=lambda r: (r["user_id"], int(r["order_id"]))):
        ms = max(int(float(row["ms_first_response"] or 0)), 0)
        at = start + timedelta(seconds=(int(row["order_id"]) - first_order) / 2)
        if row["user_id"] in clock:
            at = max(at, clock[row["user_id"]] + timedelta(milliseconds=ms))
        clock[row["user_id"]] = at
        timed.append((at, int(row["order_id"]), row))
    timed.sort(key=lambda entry: (entry[0], entry[1]))
    return [
        LoggedAttempt(
            event_id=stable_uuid("as.csv", row["order_id"]),
            tenant_id=tenant_id,
            user_id=stable_uuid("user", row["user_id"]),
            class_id=stable_uuid("class", row["student_class_id"]),
            item_id=row["problem_id"],
            skill_id=row["skill_name"],
            correct=row["correct"] == "1",
            response=row["answer_text"],
            response_time_ms=max(int(float(row["ms_first_response"] or 0)), 0),
            occurred_at=at,
        )
        for at, _, row in timed[:limit]
    ]


def collusion_ring(attempts: Sequence[LoggedAttempt], *, size: int = 3) -> list[LoggedAttempt]:
    """``size`` learners of one class copying one odd wrong answer, a minute apart.

    Placed after the last answer, on the most-answered item, by the first class with
    ``size`` learners; twelve varied wrong answers of learners of other classes come
    first, so the item has the wrong answers an "uncommon" verdict needs.
    """
    by_class: dict[str, list[str]] = {}
    for attempt in attempts:
        members = by_class.setdefault(attempt.class_id, [])
        if attempt.user_id not in members:
            members.append(attempt.user_id)
    class_id, members = next((c, m) for c, m in by_class.items() if len(m) >= size)
    others = [a for a in attempts if a.class_id != class_id]
    answered: dict[str, int] = {}
    for attempt in attempts:
        answered[attempt.item_id] = answered.get(attempt.item_id, 0) + 1
    item = max(sorted(answered), key=lambda i: answered[i])
    skill = next(a.skill_id for a in attempts if a.item_id == item)
    end = max(a.occurred_at for a in attempts)
    warm_up = [
        LoggedAttempt(
            event_id=stable_uuid("ring-warm-up", n),
            tenant_id=other.tenant_id,
            user_id=other.user_id,
            class_id=other.class_id,
            item_id=item,
            skill_id=skill,
            correct=False,
            response=str(n),
            response_time_ms=25_000,
            occurred_at=end + timedelta(minutes=n),
        )
        for n, other in enumerate(others[:12])
    ]
    return warm_up + [
        LoggedAttempt(
            event_id=stable_uuid("ring", n),
            tenant_id=attempts[0].tenant_id,
            user_id=user,
            class_id=class_id,
            item_id=item,
            skill_id=skill,
            correct=False,
            response="-31.5",
            response_time_ms=20_000,
            occurred_at=end + timedelta(minutes=20 + n),
        )
        for n, user in enumerate(members[:size])
    ]


async def write_classes(
    pool: asyncpg.Pool, tenant_id: str, attempts: Sequence[LoggedAttempt]
) -> None:
    """The tenant, every learner as a user, and every class with its learners."""
    await pool.execute(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", tenant_id
    )
    users = sorted({a.user_id for a in attempts})
    await pool.executemany(
        "INSERT INTO users (id, tenant_id, email) VALUES ($1::uuid, $2, $3)",
        [(u, tenant_id, f"{u}@example.org") for u in users],
    )
    classes = sorted({a.class_id for a in attempts})
    await pool.executemany(
        "INSERT INTO classes (tenant_id, class_id, name) VALUES ($1, $2::uuid, $2)",
        [(tenant_id, c) for c in classes],
    )
    members = sorted({(a.class_id, a.user_id) for a in attempts})
    await pool.executemany(
        "INSERT INTO class_members (tenant_id, class_id, user_id, member_role) "
        "VALUES ($1, $2::uuid, $3::uuid, 'learner') ON CONFLICT DO NOTHING",
        [(tenant_id, c, u) for c, u in members],
    )
