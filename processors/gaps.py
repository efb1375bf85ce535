"""The gaps processor: MasteryUpdated in, knowledge gaps out.

For every MasteryUpdated (key ``tenant:user``), each skill it carries gets the new
p_mastery and attempt count, and :func:`scheduler.gaps.assess` decides its state
(insufficient data, open, resolved, clear), severity and confidence; the learner's
other open gaps are re-assessed too, because their blocked-dependents count and
recency move with the learner's progress. Rows go to ``knowledge_gaps``; a
``GapDetected`` event (deterministic event_id) is published only when a skill's
state changes into open, resolved or insufficient data.

The concept graph (``skill_prerequisites``, maintained by the CMS) is cached per
tenant with the version ``concept_graph_versions`` holds; triggers bump the version
on every edge change, and every batch reads the versions of its tenants in its own
transaction and reloads the graphs that changed. A graph edit is therefore seen by
the very next batch, at the cost of one indexed query per batch.

Exactly-once effect comes from :mod:`processors.base`. A MasteryUpdated carrying
an attempt count not above the stored one (a duplicate, or an older estimate) does
not move the skill backwards. Everything a batch computes is a pure function of the
stored rows, the graph and the events (event time, never the clock), so a batch
replayed after a crash gives the same rows and the same events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from learnstream.events.v1 import derived_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.views import concept_graph
from processors.base import Decoded, Flow
from processors.events import (
    PROCESSORS_SOURCE,
    LearnerKey,
    MasteryChange,
    decode_mastery_updated,
)
from processors.offsets import SourceRecord, derived_event_id
from scheduler.gaps import (
    DEFAULT_GAP_CONFIG,
    EMPTY_GRAPH,
    ConceptGraph,
    GapConfig,
    GapState,
    assess,
    is_reported,
)

DERIVED_KIND = "gap_detected"

_STATUS_TO_PROTO = {
    GapState.OPEN: derived_pb2.GAP_STATUS_OPEN,
    GapState.RESOLVED: derived_pb2.GAP_STATUS_RESOLVED,
    GapState.INSUFFICIENT_DATA: derived_pb2.GAP_STATUS_INSUFFICIENT_DATA,
}

_LOAD_ROWS = """
    SELECT g.tenant_id, g.user_id, g.skill_id, g.status, g.severity, g.confidence,
           g.p_mastery, g.attempts, g.blocked_skills, g.last_evidence_at, g.opened_at,
           g.resolved_at, g.last_event_id
    FROM knowledge_gaps AS g
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON g.tenant_id = wanted.tenant_id AND g.user_id = wanted.user_id
    ORDER BY g.tenant_id, g.user_id, g.skill_id
    FOR UPDATE OF g
"""
_UPSERT_ROWS = """
    INSERT INTO knowledge_gaps (tenant_id, user_id, skill_id, status, severity, confidence,
                                p_mastery, attempts, blocked_skills, last_evidence_at,
                                opened_at, resolved_at, last_event_id, updated_at, version)
    SELECT r.tenant_id, r.user_id, r.skill_id, r.status, r.severity, r.confidence,
           r.p_mastery, r.attempts, r.blocked_skills, r.last_evidence_at, r.opened_at,
           r.resolved_at, r.last_event_id, now(), 1
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[],
                $7::float8[], $8::int[], $9::int[], $10::timestamptz[], $11::timestamptz[],
                $12::timestamptz[], $13::uuid[])
      AS r(tenant_id, user_id, skill_id, status, severity, confidence, p_mastery, attempts,
           blocked_skills, last_evidence_at, opened_at, resolved_at, last_event_id)
    ON CONFLICT (tenant_id, user_id, skill_id) DO UPDATE SET
        status = EXCLUDED.status,
        severity = EXCLUDED.severity,
        confidence = EXCLUDED.confidence,
        p_mastery = EXCLUDED.p_mastery,
        attempts = EXCLUDED.attempts,
        blocked_skills = EXCLUDED.blocked_skills,
        last_evidence_at = EXCLUDED.last_evidence_at,
        opened_at = EXCLUDED.opened_at,
        resolved_at = EXCLUDED.resolved_at,
        last_event_id = EXCLUDED.last_event_id,
        updated_at = EXCLUDED.updated_at,
        version = knowledge_gaps.version + 1
"""


@dataclass(frozen=True, slots=True)
class GapRow:
    """One row of ``knowledge_gaps`` (without its key)."""

    status: GapState
    severity: float
    confidence: float
    p_mastery: float
    attempts: int
    blocked_skills: int
    last_evidence_at: datetime
    opened_at: datetime | None
    resolved_at: datetime | None
    last_event_id: str


@dataclass(frozen=True, slots=True)
class GapChange:
    """A state change to announce: the row after it, and what caused it."""

    change: MasteryChange
    skill_id: str
    row: GapRow


def _reassessed(
    skill_id: str,
    row: GapRow,
    *,
    previous: GapState | None,
    change: MasteryChange,
    graph: ConceptGraph,
    learner_mastery: Mapping[str, float],
    config: GapConfig,
) -> GapRow:
    verdict = assess(
        skill_id=skill_id,
        previous=previous,
        p_mastery=row.p_mastery,
        attempts=row.attempts,
        last_evidence_at=row.last_evidence_at,
        now=change.occurred_at,
        graph=graph,
        learner_mastery=learner_mastery,
        config=config,
    )
    opened_at, resolved_at = row.opened_at, row.resolved_at
    if verdict.state is GapState.OPEN and previous is not GapState.OPEN:
        opened_at, resolved_at = change.occurred_at, None
    elif verdict.state is GapState.RESOLVED and previous is GapState.OPEN:
        resolved_at = change.occurred_at
    return replace(
        row,
        status=verdict.state,
        severity=verdict.severity,
        confidence=verdict.confidence,
        blocked_skills=verdict.blocked_skills,
        opened_at=opened_at,
        resolved_at=resolved_at,
    )


def chain_gaps(
    changes: Sequence[MasteryChange],
    rows: Mapping[LearnerKey, Mapping[str, GapRow]],
    graphs: Mapping[str, ConceptGraph],
    config: GapConfig = DEFAULT_GAP_CONFIG,
) -> tuple[dict[LearnerKey, dict[str, GapRow]], list[GapChange]]:
    """Apply ``changes`` in order to the learners' stored ``rows``; pure.

    Returns every learner's rows after the batch (only those that differ from the
    input need writing) and the state changes to announce, in order. ``graphs`` maps
    a tenant to its concept graph (missing: no prerequisites).
    """
    state: dict[LearnerKey, dict[str, GapRow]] = {}
    announced: list[GapChange] = []
    for change in changes:
        learner = state.setdefault(change.learner, dict(rows.get(change.learner, {})))
        graph = graphs.get(change.tenant_id, EMPTY_GRAPH)
        fresh: dict[str, GapState | None] = {}
        for skill in change.skills:
            old = learner.get(skill.skill_id)
            if old is not None and skill.attempts <= old.attempts:
                continue  # a duplicate or an older estimate: never move backwards
            fresh[skill.skill_id] = None if old is None else old.status
            learner[skill.skill_id] = GapRow(
                status=GapState.INSUFFICIENT_DATA if old is None else old.status,
                severity=0.0 if old is None else old.severity,
                confidence=0.0 if old is None else old.confidence,
                p_mastery=skill.p_mastery,
                attempts=skill.attempts,
                blocked_skills=0 if old is None else old.blocked_skills,
                last_evidence_at=change.occurred_at,
                opened_at=None if old is None else old.opened_at,
                resolved_at=None if old is None else old.resolved_at,
                last_event_id=change.event_id,
            )
        if not fresh:
            continue
        mastery = {skill_id: row.p_mastery for skill_id, row in learner.items()}
        for skill_id in sorted(learner):
            row = learner[skill_id]
            if skill_id not in fresh and row.status is not GapState.OPEN:
                continue
            previous = fresh.get(skill_id, row.status)
            new_row = _reassessed(
                skill_id,
                row,
                previous=previous,
                change=change,
                graph=graph,
                learner_mastery=mastery,
                config=config,
            )
            learner[skill_id] = new_row
            if skill_id in fresh and is_reported(previous, new_row.status):
                announced.append(GapChange(change, skill_id, new_row))
    return state, announced


def gap_detected(announced: GapChange, *, topic: str) -> OutgoingRecord:
    """The GapDetected record of one state change, keyed by learner; no clock in it."""
    change, row = announced.change, announced.row
    envelope = envelope_pb2.Envelope(
        event_id=derived_event_id(change.event_id, f"{DERIVED_KIND}:{announced.skill_id}"),
        tenant_id=change.tenant_id,
        user_id=change.user_id,
        session_id=change.session_id,
        source=PROCESSORS_SOURCE,
    )
    envelope.occurred_at.FromDatetime(change.occurred_at)
    message = derived_pb2.GapDetected(
        envelope=envelope,
        cause_event_id=change.event_id,
        skill_id=announced.skill_id,
        status=_STATUS_TO_PROTO[row.status],
        severity=row.severity,
        confidence=row.confidence,
        p_mastery=row.p_mastery,
        blocked_skills=row.blocked_skills,
    )
    return OutgoingRecord(
        topic=topic,
        key=learner_key(change.tenant_id, change.user_id),
        value=message.SerializeToString(),
    )


class GapsProcessor:
    """Knowledge gaps per (tenant, user, skill); see the module docstring."""

    name = "gaps"
    flow = Flow(reads=(Stream.MASTERY,), writes=("knowledge_gaps",), emits=(Stream.GAPS,))
    sources = flow.reads

    def __init__(self, settings: Settings, *, config: GapConfig = DEFAULT_GAP_CONFIG) -> None:
        self.config = config
        self._gaps_topic = settings.topic(Stream.GAPS)
        # tenant -> graph tagged with its concept_graph_versions.version (0: no row).
        # A read-through cache of database state, so it does not break the rule that
        # apply() keeps no state of its own between calls.
        self._graphs: dict[str, ConceptGraph] = {}

    def decode(self, record: SourceRecord) -> MasteryChange:
        return decode_mastery_updated(record)

    def event_id(self, event: MasteryChange) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[MasteryChange]]
    ) -> list[OutgoingRecord]:
        """Update ``knowledge_gaps`` for ``batch``; return the GapDetected records."""
        changes = [item.event for item in batch]
        learners = sorted({change.learner for change in changes})
        graphs = await self._current_graphs(conn, sorted({c.tenant_id for c in changes}))
        stored = await _load_rows(conn, learners)
        after, announced = chain_gaps(changes, stored, graphs, self.config)
        await _store_rows(conn, stored, after)
        return [gap_detected(a, topic=self._gaps_topic) for a in announced]

    async def _current_graphs(
        self, conn: asyncpg.Connection, tenants: list[str]
    ) -> dict[str, ConceptGraph]:
        versions = await concept_graph.graph_versions(conn, tenants)
        for tenant in tenants:
            version = versions[tenant]
            cached = self._graphs.get(tenant)
            if cached is None or cached.version != version:
                self._graphs[tenant] = await load_graph(conn, tenant, version)
        return {tenant: self._graphs[tenant] for tenant in tenants}


async def load_graph(conn: asyncpg.Connection, tenant_id: str, version: int) -> ConceptGraph:
    """The tenant's prerequisite graph from ``skill_prerequisites``, tagged ``version``."""
    return ConceptGraph(await concept_graph.load_requires(conn, tenant_id), version)


async def _load_rows(
    conn: asyncpg.Connection, learners: list[LearnerKey]
) -> dict[LearnerKey, dict[str, GapRow]]:
    rows = await conn.fetch(
        _LOAD_ROWS, [k.tenant_id for k in learners], [k.user_id for k in learners]
    )
    stored: dict[LearnerKey, dict[str, GapRow]] = {}
    for r in rows:
        stored.setdefault(LearnerKey(r["tenant_id"], r["user_id"]), {})[r["skill_id"]] = GapRow(
            status=GapState(r["status"]),
            severity=r["severity"],
            confidence=r["confidence"],
            p_mastery=r["p_mastery"],
            attempts=r["attempts"],
            blocked_skills=r["blocked_skills"],
            last_evidence_at=r["last_evidence_at"],
            opened_at=r["opened_at"],
            resolved_at=r["resolved_at"],
            last_event_id=str(r["last_event_id"]),
        )
    return stored


async def _store_rows(
    conn: asyncpg.Connection,
    stored: Mapping[LearnerKey, Mapping[str, GapRow]],
    after: Mapping[LearnerKey, Mapping[str, GapRow]],
) -> None:
    changed = sorted(
        (
            (learner, skill_id, row)
            for learner, rows in after.items()
            for skill_id, row in rows.items()
            if stored.get(learner, {}).get(skill_id) != row
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    if not changed:
        return
    columns: list[list[object]] = [[] for _ in range(13)]
    for learner, skill_id, row in changed:
        values = (
            learner.tenant_id,
            learner.user_id,
            skill_id,
            row.status.value,
            row.severity,
            row.confidence,
            row.p_mastery,
            row.attempts,
            row.blocked_skills,
            row.last_evidence_at,
            row.opened_at,
            row.resolved_at,
            row.last_event_id,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.execute(_UPSERT_ROWS, *columns)
