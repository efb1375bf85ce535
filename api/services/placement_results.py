"""Placement results: storing a finished test, its seeds of the learner's state, its event.

When the test ends, one PostgreSQL transaction writes the result (``placement_results``),
the seeds and the onboarding step; then a ``PlacementEvent`` goes to the placements
topic. No processor consumes placements yet, so the API writes the seeds itself,
through the owning modules of the views and the version discipline the processors use:

* ``learner_ability`` (:mod:`learnstream.views.ability`): the placement answers are
  evidence like any other answer, so they are added to the learner's stored posterior
  (the prior on its grid for a new learner) with :func:`scheduler.irt.update_posterior`;
  ``version`` goes up by one.
* ``skill_mastery`` (:mod:`learnstream.views.mastery`): skills without a row get the
  CAT's starting mastery with the placement answers on that skill as attempts; rows
  that exist are evidence from practice and are left alone.

Then the learner's Redis hot-cache fields for those rows are dropped (readers fall back
to PostgreSQL). A placement_id is written once (``ON CONFLICT DO NOTHING``): a second
finisher of the same session seeds nothing. If the broker does not acknowledge the
event, ``event_published_at`` stays NULL and reading the result retries the publish.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from api.exceptions import ConflictError
from api.services.events import EventPublisher
from api.services.identifiers import is_uuid
from api.services.placement_cat import BankItem, PlacementSession, ability_after, answers_of
from api.services.transactions import transaction
from learnstream import redis_keys
from learnstream.db import Queryable
from learnstream.events.v1 import placement_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from learnstream.views.ability import (
    ABILITY_VIEW,
    DEFAULT_PRIOR,
    AbilityState,
    ability_row,
    lock_abilities,
)
from learnstream.views.mastery import MasterySeed, seed_mastery
from scheduler import cat, irt

SOURCE_APP = "learnstream-api"


@dataclass(frozen=True, slots=True)
class PlacementResult:
    """A finished placement test. ``ability``/``ability_se`` in logits; times UTC."""

    placement_id: str
    user_id: str
    learner_id: str
    ability: float
    ability_se: float
    items_administered: int
    correct: int
    stop_reason: str
    skill_estimates: dict[str, float]  # skill -> starting mastery in [0, 1]
    seeded_skills: tuple[str, ...]
    started_at: datetime
    completed_at: datetime
    event_published: bool


_INSERT_RESULT = """
    INSERT INTO placement_results (tenant_id, placement_id, user_id, learner_id, ability,
        ability_se, items_administered, correct, stop_reason, skill_estimates, answers,
        seeded_skills, started_at, completed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, '{}', $12, $13)
    ON CONFLICT (tenant_id, placement_id) DO NOTHING
    RETURNING placement_id
"""


class _RacedWriter(Exception):
    """A processor created the learner's ability row between our read and insert."""


async def finish(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    session: PlacementSession,
    *,
    bank: cat.CatBank,
    now: datetime,
) -> PlacementResult:
    """Write the result, the ability and mastery seeds and the onboarding step at once.

    Idempotent per placement_id: a second call seeds nothing and returns the stored result.
    """
    outcome = cat.result(session.state, bank)
    answers = answers_of(session)
    per_skill = Counter(item.skill_id for item, _ in answers)
    correct_per_skill = Counter(item.skill_id for item, correct in answers if correct)
    skills = sorted(outcome.skill_mastery)
    seeded: list[str] | None = None
    for _ in range(3):  # a processor inserting the ability row first is rare; retry then
        try:
            seeded = await _write_result(
                db, session, outcome, answers, skills, per_skill, correct_per_skill, now
            )
            break
        except _RacedWriter:
            continue
    if seeded is None:
        raise ConflictError("learner state kept changing meanwhile; answer again")
    found = await stored_result(
        db, tenant_id=session.tenant_id, user_id=session.user_id, placement_id=session.placement_id
    )
    assert found is not None
    if seeded:
        await _drop_hot_cache(redis, settings, session, seeded)
    return found


async def _write_result(
    db: Queryable,
    session: PlacementSession,
    outcome: cat.CatResult,
    answers: Sequence[tuple[BankItem, bool]],
    skills: Sequence[str],
    per_skill: Mapping[str, int],
    correct_per_skill: Mapping[str, int],
    now: datetime,
) -> list[str]:
    """One transaction; returns the skills seeded ([] if the placement was stored before)."""
    tenant_id, learner_id = session.tenant_id, session.learner_id
    event_id = uuid.UUID(session.placement_id)
    async with transaction(db) as conn:
        inserted = await conn.fetchval(
            _INSERT_RESULT,
            tenant_id,
            event_id,
            session.user_id,
            learner_id,
            outcome.ability,
            outcome.ability_se,
            outcome.n_items,
            sum(outcome.responses),
            outcome.stop_reason.value if outcome.stop_reason else "stopped",
            json.dumps(dict(outcome.skill_mastery)),
            json.dumps(
                [
                    {"item_id": item.item_id, "skill_id": item.skill_id, "correct": correct}
                    for item, correct in answers
                ]
            ),
            session.started_at,
            now,
        )
        if inserted is None:
            return []
        await _seed_ability(conn, session, answers, now)
        seeded = await seed_mastery(
            conn,
            tenant_id=tenant_id,
            user_id=learner_id,
            seeds=[
                MasterySeed(
                    s,
                    outcome.skill_mastery[s],
                    per_skill.get(s, 0),
                    correct_per_skill.get(s, 0),
                )
                for s in skills
            ],
            event_id=session.placement_id,
            at=now,
        )
        await conn.execute(
            "UPDATE placement_results SET seeded_skills = $3 "
            "WHERE tenant_id = $1 AND placement_id = $2",
            tenant_id,
            event_id,
            sorted(seeded),
        )
        await conn.execute(
            """
            INSERT INTO onboarding_progress (tenant_id, user_id, step, completed_at, skipped)
            VALUES ($1, $2, 'placement', $3, false) ON CONFLICT DO NOTHING
            """,
            tenant_id,
            session.user_id,
            now,
        )
        return seeded


async def _seed_ability(
    conn: Queryable,
    session: PlacementSession,
    answers: Sequence[tuple[BankItem, bool]],
    now: datetime,
) -> None:
    """Add the placement answers to the learner's stored ability (``DEFAULT_PRIOR`` if none).

    The row is locked ``FOR UPDATE``, so only a row created meanwhile (read as absent)
    makes the versioned write come up short: _RacedWriter, and the caller retries.
    """
    learner = (session.tenant_id, session.learner_id)
    stored, versions = await lock_abilities(conn, [learner])
    before = stored.get(learner)
    posterior = ability_after(before.posterior if before is not None else None, answers)
    state = AbilityState(
        posterior=posterior,
        prior=before.prior if before is not None else DEFAULT_PRIOR,
        estimate=irt.summarize(posterior),
        last_event_id=session.placement_id,
        last_attempt_at=now,
    )
    if await ABILITY_VIEW.write(conn, [ability_row(learner, state)], [versions.get(learner)]):
        raise _RacedWriter()


async def _drop_hot_cache(
    redis: Redis, settings: Settings, session: PlacementSession, seeded: Sequence[str]
) -> None:
    """Drop the cached fields of the rows the seeds changed; readers fall back to PostgreSQL.

    The key and fields are those of :mod:`processors.learner_cache`.
    """
    key = redis_keys.redis_key(
        settings.redis_namespace, redis_keys.LEARNER_CACHE, session.tenant_id, session.learner_id
    )
    await redis.hdel(key, "ability", *(f"mastery:{skill}" for skill in seeded))


async def stored_result(
    db: Queryable, *, tenant_id: str, user_id: str, placement_id: str
) -> PlacementResult | None:
    """The account's finished placement ``placement_id``, or None."""
    if not is_uuid(placement_id):
        return None
    row = await db.fetchrow(
        "SELECT * FROM placement_results WHERE tenant_id = $1 AND placement_id = $2 "
        "AND user_id::text = $3",
        tenant_id,
        placement_id,
        user_id,
    )
    return _result_from_row(row) if row is not None else None


async def latest_result(db: Queryable, *, tenant_id: str, user_id: str) -> PlacementResult | None:
    """The account's most recent finished placement, or None."""
    row = await db.fetchrow(
        "SELECT * FROM placement_results WHERE tenant_id = $1 AND user_id::text = $2 "
        "ORDER BY completed_at DESC LIMIT 1",
        tenant_id,
        user_id,
    )
    return _result_from_row(row) if row is not None else None


def _result_from_row(row: Any) -> PlacementResult:
    return PlacementResult(
        placement_id=str(row["placement_id"]),
        user_id=str(row["user_id"]),
        learner_id=row["learner_id"],
        ability=row["ability"],
        ability_se=row["ability_se"],
        items_administered=row["items_administered"],
        correct=row["correct"],
        stop_reason=row["stop_reason"],
        skill_estimates=json.loads(row["skill_estimates"]),
        seeded_skills=tuple(row["seeded_skills"]),
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        event_published=row["event_published_at"] is not None,
    )


def placement_event(result: PlacementResult, *, tenant_id: str) -> placement_pb2.PlacementEvent:
    """The PlacementEvent of ``result``; its event_id is the placement_id (stable on retry)."""
    event = placement_pb2.PlacementEvent()
    envelope = event.envelope
    envelope.event_id = result.placement_id
    envelope.tenant_id = tenant_id
    envelope.user_id = result.learner_id
    envelope.occurred_at.FromDatetime(result.completed_at)
    envelope.source.app = SOURCE_APP
    envelope.source.platform = "api"
    event.placement_id = result.placement_id
    event.ability = result.ability
    event.ability_se = result.ability_se
    event.items_administered = result.items_administered
    for skill_id in sorted(result.skill_estimates):
        estimate = event.skill_estimates.add()
        estimate.skill_id = skill_id
        estimate.p_mastery = result.skill_estimates[skill_id]
    return event


async def publish(
    db: Queryable, publisher: EventPublisher, result: PlacementResult, *, tenant_id: str
) -> PlacementResult:
    """Publish ``result``'s PlacementEvent; once acknowledged, mark it published."""
    if not await publisher.publish(Stream.PLACEMENTS, placement_event(result, tenant_id=tenant_id)):
        return result
    await db.execute(
        "UPDATE placement_results SET event_published_at = now() "
        "WHERE tenant_id = $1 AND placement_id = $2 AND event_published_at IS NULL",
        tenant_id,
        result.placement_id,
    )
    return replace(result, event_published=True)
