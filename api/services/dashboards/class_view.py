"""A teacher's overview of a class: a mastery heat map, per-skill summaries, learners at
risk and the gaps the class shares.

Read from ``skill_mastery``, ``knowledge_gaps`` and ``review_schedule`` under each
member's learner id (:mod:`api.services.learner_ids`); the risk and common-gap rules are
in :mod:`.rules`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from api.services import learner_ids
from api.services.classes import ClassMember, MemberRole, SchoolClass
from api.services.dashboards.learner import skill_names
from api.services.dashboards.rules import (
    CommonGap,
    LearnerSignals,
    common_gaps,
    mean_mastery,
    risk_reasons,
)
from api.services.mastery import SkillMastery, skill_mastery_from_row
from learnstream.db import Queryable
from learnstream.views import mastery as mastery_view


@dataclass(frozen=True, slots=True)
class HeatmapRow:
    """One learner's row of the heat map: cells align with the overview's ``skills``."""

    user_id: str
    display_name: str
    learner_id: str
    p_mastery: list[float | None]  # None: no evidence on that skill
    labels: list[str | None]
    mean_p_mastery: float | None
    last_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class SkillColumn:
    """A skill of the class with its summary over the class's learners."""

    skill_id: str
    name: str
    learners_with_evidence: int
    mean_p_mastery: float | None
    label_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class AtRisk:
    user_id: str
    display_name: str
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class ClassOverview:
    class_id: str
    name: str
    generated_at: datetime
    learners: int
    skills: list[SkillColumn]
    heatmap: list[HeatmapRow]
    at_risk: list[AtRisk]
    common_gaps: list[CommonGap]


@dataclass(frozen=True, slots=True)
class _ClassRows:
    """What the overview reads, by learner id: mastery cells, open gaps, overdue reviews."""

    mastery: dict[str, dict[str, SkillMastery]]
    gaps: dict[str, list[tuple[str, float]]]
    overdue: dict[str, int]


async def class_overview(
    db: Queryable, school_class: SchoolClass, *, now: datetime
) -> ClassOverview:
    """Heat map, per-skill summary, learners at risk and common gaps of a class.

    The caller checked that the principal manages ``school_class``.
    """
    tenant_id = school_class.tenant_id
    members = [m for m in school_class.members if m.member_role is MemberRole.LEARNER]
    mapping = await learner_ids.learner_ids_of(
        db, tenant_id=tenant_id, user_ids=[m.user_id for m in members]
    )
    ids = [mapping[m.user_id] for m in members if m.user_id in mapping]
    names = await skill_names(db, tenant_id)
    rows = await _class_rows(db, tenant_id, ids, now=now)
    skill_ids = sorted({skill for cells in rows.mastery.values() for skill in cells})
    heatmap = []
    at_risk = []
    for member in members:
        learner_id = mapping.get(member.user_id)
        if learner_id is None:
            continue
        row, risk = _learner_row(member, learner_id, skill_ids, rows, now=now)
        heatmap.append(row)
        if risk is not None:
            at_risk.append(risk)
    at_risk.sort(key=lambda r: (-len(r.reasons), r.display_name, r.user_id))
    return ClassOverview(
        class_id=school_class.class_id,
        name=school_class.name,
        generated_at=now,
        learners=len(members),
        skills=[_skill_column(skill, names, rows.mastery) for skill in skill_ids],
        heatmap=heatmap,
        at_risk=at_risk,
        common_gaps=common_gaps(rows.gaps, names),
    )


async def _class_rows(
    db: Queryable, tenant_id: str, ids: Sequence[str], *, now: datetime
) -> _ClassRows:
    rows = await mastery_view.learners_rows(db, tenant_id=tenant_id, user_ids=ids)
    mastery: dict[str, dict[str, SkillMastery]] = {i: {} for i in ids}
    for row in rows:
        mastery[row["user_id"]][row["skill_id"]] = skill_mastery_from_row(row)
    gaps: dict[str, list[tuple[str, float]]] = {}
    for g in await db.fetch(
        """
        SELECT user_id, skill_id, severity FROM knowledge_gaps
        WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND status = 'open'
        """,
        tenant_id,
        list(ids),
    ):
        gaps.setdefault(g["user_id"], []).append((g["skill_id"], g["severity"]))
    overdue = {
        r["user_id"]: int(r["overdue"])
        for r in await db.fetch(
            """
            SELECT user_id, count(*) AS overdue FROM review_schedule
            WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND due_at <= $3
            GROUP BY user_id
            """,
            tenant_id,
            list(ids),
            now,
        )
    }
    return _ClassRows(mastery, gaps, overdue)


def _learner_row(
    member: ClassMember,
    learner_id: str,
    skill_ids: Sequence[str],
    rows: _ClassRows,
    *,
    now: datetime,
) -> tuple[HeatmapRow, AtRisk | None]:
    """One learner's heat-map row, and why they are at risk (None when they are not)."""
    cells = rows.mastery.get(learner_id, {})
    last = max((c.last_attempt_at for c in cells.values() if c.attempts > 0), default=None)
    mean = mean_mastery(cells.values())
    row = HeatmapRow(
        member.user_id,
        member.display_name,
        learner_id,
        [cells[s].p_mastery if s in cells else None for s in skill_ids],
        [cells[s].label.value if s in cells else None for s in skill_ids],
        mean,
        last,
    )
    reasons = risk_reasons(
        LearnerSignals(
            open_gap_severities=rows.gaps.get(learner_id, []),
            mean_p_mastery=mean,
            total_attempts=sum(c.attempts for c in cells.values()),
            overdue_reviews=rows.overdue.get(learner_id, 0),
            last_attempt_at=last,
        ),
        now=now,
    )
    risk = AtRisk(member.user_id, member.display_name, reasons) if reasons else None
    return row, risk


def _skill_column(
    skill: str, names: dict[str, str], mastery: dict[str, dict[str, SkillMastery]]
) -> SkillColumn:
    cells_of_skill = [c[skill] for c in mastery.values() if skill in c]
    practised = [c for c in cells_of_skill if c.attempts > 0]
    return SkillColumn(
        skill,
        names.get(skill, skill),
        len(practised),
        sum(c.p_mastery for c in practised) / len(practised) if practised else None,
        dict(Counter(c.label.value for c in cells_of_skill)),
    )
