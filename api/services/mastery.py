"""Learner mastery as the dashboards show it: the BKT probability plus a rule-style label.

Teachers read "familiar" more easily than "p = 0.62", so every probability is
shown beside a label from fixed thresholds. The thresholds are named here once;
MASTERED_AT is the conventional BKT mastery criterion (0.95).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from learnstream.db import Queryable
from learnstream.views import mastery as mastery_view

# Lower bounds (inclusive) of each label, on p_mastery in [0, 1].
FAMILIAR_AT = 0.40
PROFICIENT_AT = 0.70
MASTERED_AT = 0.95


class MasteryLabel(StrEnum):
    """Rule-style reading of a mastery probability, from no evidence to mastered."""

    NOT_STARTED = "not started"
    PRACTISING = "practising"
    FAMILIAR = "familiar"
    PROFICIENT = "proficient"
    MASTERED = "mastered"


def mastery_label(p_mastery: float, attempts: int) -> MasteryLabel:
    """The label for a skill with probability ``p_mastery`` in [0, 1] after ``attempts`` >= 0.

    With no attempts the prior says nothing about this learner, so the skill is
    "not started" whatever the probability.
    """
    if not 0.0 <= p_mastery <= 1.0:
        raise ValueError(f"p_mastery must lie in [0, 1], got {p_mastery}")
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    if attempts == 0:
        return MasteryLabel.NOT_STARTED
    if p_mastery >= MASTERED_AT:
        return MasteryLabel.MASTERED
    if p_mastery >= PROFICIENT_AT:
        return MasteryLabel.PROFICIENT
    if p_mastery >= FAMILIAR_AT:
        return MasteryLabel.FAMILIAR
    return MasteryLabel.PRACTISING


@dataclass(frozen=True, slots=True)
class SkillMastery:
    """One row of the ``skill_mastery`` view with its label; timestamps are UTC."""

    skill_id: str
    p_mastery: float
    label: MasteryLabel
    attempts: int
    correct: int
    last_attempt_at: datetime
    updated_at: datetime


async def learner_mastery(db: Queryable, *, tenant_id: str, user_id: str) -> list[SkillMastery]:
    """Every skill of one learner of ``tenant_id``, ordered by skill_id; empty if none.

    ``db`` is an asyncpg pool or connection. The tenant filter is part of the
    primary key, so another tenant's learner with the same user_id never shows.
    """
    rows = await mastery_view.learner_rows(db, tenant_id=tenant_id, user_id=user_id)
    return [skill_mastery_from_row(row) for row in rows]


async def learner_known(db: Queryable, *, tenant_id: str, user_id: str) -> bool:
    """True if ``user_id`` is an account of ``tenant_id`` or has mastery rows there.

    Client apps name learners by their own ids, which need not be accounts; a
    learner with neither is unknown (404), which is also what another tenant's
    learner looks like.
    """
    if await mastery_view.has_mastery(db, tenant_id=tenant_id, user_id=user_id):
        return True
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id::text = $2)",
        tenant_id,
        user_id,
    )
    return bool(found)


def skill_mastery_from_row(row: Any) -> SkillMastery:
    """A labelled ``SkillMastery`` from a row with the skill_mastery view's columns."""
    return SkillMastery(
        skill_id=row["skill_id"],
        p_mastery=row["p_mastery"],
        label=mastery_label(row["p_mastery"], row["attempts"]),
        attempts=row["attempts"],
        correct=row["correct"],
        last_attempt_at=row["last_attempt_at"],
        updated_at=row["updated_at"],
    )
