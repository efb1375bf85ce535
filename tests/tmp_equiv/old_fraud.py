"""The fraud processor: attempts and sessions in, fraud scores out.

Per attempt (AttemptEvent, key ``tenant:user``): rapid response against the item's
rolling response-time median, person misfit (lz*) over the learner's recent answers,
collusion (the same uncommon wrong answer as other learners of a class or shared
session within a window) and impossible velocity. Per session (SessionEvent with a
``device_id``): many accounts on one device. The pure scoring is
:mod:`scheduler.fraud`; this module keeps its state in PostgreSQL.

Outputs: ``fraud_signals`` (one row per attempt or session whose score is above 0;
no row means 0), with the per-signal weights, the reasons, and ``flagged`` when the
score reaches ``settings.fraud_alert_threshold`` (views ``flagged_attempts`` and
``flagged_sessions`` are what analyses join to exclude them); a ``FraudScored``
event per scored subject and per later re-score. Fraud never changes mastery: this
processor writes no mastery table, and the mastery processor does not read these.

Item parameters. Person fit uses the calibrated IRT parameters of
``irt_item_parameters`` (filled by the calibration DAG) when the item has them;
otherwise a Rasch proxy (:func:`scheduler.fraud.difficulty_proxy`: ``a = 1, c = 0``
and ``b`` from the item's correct rate, shrunk toward its skill's). Either is frozen
into the learner's history when the answer is scored, so a recalibration does not
rewrite the past.

State, and what "exactly once" means here. Per-learner state (recent answers) lives
with the learner's partition, so it is applied in order and exactly once by the
offsets machinery of :mod:`processors.base`. Cross-learner state (item and skill
response-time histograms, wrong-answer counts, group answers, collusion partners,
device sessions) is shared by all partitions; every batch locks the rows it reads
(created first when missing, so two workers never both insert), so concurrent
workers never lose an update. Collusion partners and device sessions are
insert/extend-only and both sides of a match are re-scored, so their final effect
does not depend on which side came first; but a score computed from an item's
median or from "is this wrong answer uncommon" is a real-time judgment made with
what the other partitions had delivered by then, so two runs that interleave
partitions differently (with or without a crash) can differ in those scores. Within
one partition's order everything is deterministic (event time, never the clock).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg

from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2, session_pb2
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from processors.base import Decoded
from processors.exceptions import PoisonEvent
from processors.events import Attempt, decode_attempt
from processors.offsets import SourceRecord, decode_learner_event, derived_event_id
from scheduler.fraud import (
    DEFAULT_FRAUD_CONFIG,
    EMPTY_REFERENCE,
    FraudConfig,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    collusion,
    combine,
    difficulty_proxy,
    empty_histogram,
    is_uncommon,
    normalize_response,
    observe,
    person_misfit,
    rapid_response,
    shared_device,
    velocity,
)

_SIGNAL_TO_PROTO = {
    FraudSignalKind.RAPID_RESPONSE: derived_pb2.FRAUD_SIGNAL_RAPID_RESPONSE,
    FraudSignalKind.PERSON_MISFIT: derived_pb2.FRAUD_SIGNAL_PERSON_MISFIT,
    FraudSignalKind.COLLUSION: derived_pb2.FRAUD_SIGNAL_COLLUSION,
    FraudSignalKind.IMPOSSIBLE_VELOCITY: derived_pb2.FRAUD_SIGNAL_IMPOSSIBLE_VELOCITY,
    FraudSignalKind.SHARED_DEVICE: derived_pb2.FRAUD_SIGNAL_SHARED_DEVICE,
}
# The weight column of each signal in fraud_signals.
_WEIGHT_COLUMNS = {
    FraudSignalKind.RAPID_RESPONSE: "w_rapid_response",
    FraudSignalKind.PERSON_MISFIT: "w_person_misfit",
    FraudSignalKind.COLLUSION: "w_collusion",
    FraudSignalKind.IMPOSSIBLE_VELOCITY: "w_velocity",
    FraudSignalKind.SHARED_DEVICE: "w_shared_device",
}

ATTEMPT = "attempt"
SESSION = "session"


# --- decoded events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoredAttempt:
    """An attempt with the fields fraud scoring needs beyond the mastery ones."""

    attempt: Attempt
    item_id: str
    response: str | None  # normalized; None when empty
    response_time_ms: int  # 0: not reported


@dataclass(frozen=True, slots=True)
class SessionSighting:
    """A SessionEvent that names a device (others are not scored)."""

    event_id: str
    tenant_id: str
    user_id: str
    session_id: str
    device_id: str  # empty: nothing to score
    occurred_at: datetime  # UTC


FraudInput = ScoredAttempt | SessionSighting


def decode_session(record: SourceRecord) -> SessionSighting:
    """Parse and validate a SessionEvent record; PoisonEvent says what is wrong."""
    event, event_id = decode_learner_event(record, session_pb2.SessionEvent)
    envelope = event.envelope
    return SessionSighting(
        event_id=event_id,
        tenant_id=envelope.tenant_id,
        user_id=envelope.user_id,
        session_id=envelope.session_id,
        device_id=event.device_id,
        occurred_at=envelope.occurred_at.ToDatetime(tzinfo=UTC),
    )


def decode_scored_attempt(record: SourceRecord) -> ScoredAttempt:
    """An AttemptEvent validated as the mastery processor does, plus item, answer and time."""
    attempt = decode_attempt(record)
    assert record.value is not None  # decode_attempt refuses a missing value
    event = attempt_pb2.AttemptEvent.FromString(record.value)
    if event.response_time_ms < 0:
        raise PoisonEvent(f"event {attempt.event_id}: response_time_ms is negative")
    return ScoredAttempt(
        attempt=attempt,
        item_id=event.item_id,
        response=normalize_response(event.response),
        response_time_ms=event.response_time_ms,
    )


# --- state rows -------------------------------------------------------------------------


class LearnerKey(NamedTuple):
    tenant_id: str
    user_id: str


class ReferenceKey(NamedTuple):
    tenant_id: str
    scope: str  # "item" or "skill"
    scope_id: str


class AnswerKey(NamedTuple):
    tenant_id: str
    item_id: str
    response: str


class SubjectKey(NamedTuple):
    tenant_id: str
    kind: str  # ATTEMPT or SESSION
    subject_id: str


@dataclass(frozen=True, slots=True)
class LearnerHistory:
    """The learner's last answers, oldest first (parallel tuples)."""

    event_ids: tuple[str, ...] = ()
    occurred_at: tuple[datetime, ...] = ()
    scores: tuple[float, ...] = ()
    a: tuple[float, ...] = ()
    b: tuple[float, ...] = ()
    c: tuple[float, ...] = ()

    def push(
        self,
        event_id: str,
        at: datetime,
        score: float,
        params: tuple[float, float, float],
        keep: int,
    ) -> LearnerHistory:
        """This history with one more answer, keeping the last ``keep``."""
        cut = slice(-keep, None)
        return LearnerHistory(
            (*self.event_ids, event_id)[cut],
            (*self.occurred_at, at)[cut],
            (*self.scores, score)[cut],
            (*self.a, params[0])[cut],
            (*self.b, params[1])[cut],
            (*self.c, params[2])[cut],
        )


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One row of ``fraud_signals`` (the key aside)."""

    user_id: str
    session_id: str
    item_id: str
    device_id: str
    occurred_at: datetime
    evidence: tuple[FraudEvidence, ...]  # at most one per signal, sorted by signal
    last_cause_id: str

    @property
    def score(self) -> float:
        return combine(self.evidence)

    def with_evidence(self, new: FraudEvidence | None, signal: FraudSignalKind) -> SignalRow:
        """This row with ``signal``'s evidence replaced by ``new`` (removed when None)."""
        kept = [e for e in self.evidence if e.signal is not signal]
        if new is not None:
            kept.append(new)
        return replace(self, evidence=tuple(sorted(kept, key=lambda e: e.signal.value)))


@dataclass(frozen=True, slots=True)
class GroupAnswer:
    """A wrong answer as the collusion window stores it."""

    group_key: str
    user_id: str
    session_id: str
    event_id: str
    occurred_at: datetime


@dataclass(slots=True)
class BatchState:
    """What one batch reads and writes, loaded up front and written at the end."""

    histories: dict[LearnerKey, LearnerHistory]
    references: dict[ReferenceKey, ResponseReference]
    wrong_counts: dict[AnswerKey, int]
    groups: dict[LearnerKey, tuple[str, ...]]
    # (tenant, item) -> calibrated (a, b, c), for the items that have them.
    item_params: dict[tuple[str, str], tuple[float, float, float]]
    signals: dict[SubjectKey, SignalRow | None] = field(default_factory=dict)
    partners: dict[SubjectKey, set[str]] = field(default_factory=dict)
    new_partners: set[tuple[SubjectKey, str]] = field(default_factory=set)
    new_answers: list[tuple[AnswerKey, GroupAnswer]] = field(default_factory=list)
    dirty_signals: set[SubjectKey] = field(default_factory=set)


# --- SQL ----------------------------------------------------------------------------------

_LOAD_HISTORIES = """
    SELECT h.tenant_id, h.user_id, h.event_ids, h.occurred_at, h.scores, h.a, h.b, h.c
    FROM fraud_learner_history AS h
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON h.tenant_id = wanted.tenant_id AND h.user_id = wanted.user_id
    ORDER BY h.tenant_id, h.user_id
    FOR UPDATE OF h
"""
_UPSERT_HISTORIES = """
    INSERT INTO fraud_learner_history (tenant_id, user_id, event_ids, occurred_at, scores, a, b, c)
    SELECT h.* FROM jsonb_to_recordset($1::jsonb) AS h(
        tenant_id text, user_id text, event_ids text[], occurred_at timestamptz[],
        scores float8[], a float8[], b float8[], c float8[])
    ORDER BY h.tenant_id, h.user_id
    ON CONFLICT (tenant_id, user_id) DO UPDATE SET
        event_ids = EXCLUDED.event_ids, occurred_at = EXCLUDED.occurred_at,
        scores = EXCLUDED.scores, a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c
"""
# Shared rows are created (empty) before they are locked, so two workers never both
# insert one and lose an update; the ORDER BY gives every worker the same lock order.
_ENSURE_REFERENCES = """
    INSERT INTO fraud_reference_stats (tenant_id, scope, scope_id, rt_counts, answers, correct)
    SELECT k.tenant_id, k.scope, k.scope_id, $4::float8[], 0, 0
    FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, scope, scope_id)
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
"""
_LOAD_REFERENCES = """
    SELECT r.tenant_id, r.scope, r.scope_id, r.rt_counts, r.answers, r.correct
    FROM fraud_reference_stats AS r
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, scope, scope_id)
      ON r.tenant_id = k.tenant_id AND r.scope = k.scope AND r.scope_id = k.scope_id
    ORDER BY r.tenant_id, r.scope, r.scope_id
    FOR UPDATE OF r
"""
_STORE_REFERENCES = """
    UPDATE fraud_reference_stats AS r SET rt_counts = n.rt_counts, answers = n.answers,
                                          correct = n.correct
    FROM (SELECT * FROM jsonb_to_recordset($1::jsonb)
          AS x(tenant_id text, scope text, scope_id text, rt_counts float8[], answers int,
               correct int)) AS n
    WHERE r.tenant_id = n.tenant_id AND r.scope = n.scope AND r.scope_id = n.scope_id
"""
_ENSURE_WRONG_COUNTS = """
    INSERT INTO fraud_wrong_answer_counts (tenant_id, item_id, response, answers)
    SELECT k.*, 0 FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, item_id, response)
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
"""
_LOAD_WRONG_COUNTS = """
    SELECT w.tenant_id, w.item_id, w.response, w.answers
    FROM fraud_wrong_answer_counts AS w
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, item_id, response)
      ON w.tenant_id = k.tenant_id AND w.item_id = k.item_id AND w.response = k.response
    ORDER BY w.tenant_id, w.item_id, w.response
    FOR UPDATE OF w
"""
_STORE_WRONG_COUNTS = """
    UPDATE fraud_wrong_answer_counts AS w SET answers = n.answers
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
      AS n(tenant_id, item_id, response, answers)
    WHERE w.tenant_id = n.tenant_id AND w.item_id = n.item_id AND w.response = n.response
"""
# Classes are the API's (class_members.user_id is a uuid); only learners count.
_LOAD_CLASSES = """
    SELECT m.tenant_id, m.user_id::text AS user_id, m.class_id::text AS class_id
    FROM class_members AS m
    JOIN unnest($1::text[], $2::uuid[]) AS k(tenant_id, user_id)
      ON m.tenant_id = k.tenant_id AND m.user_id = k.user_id
    WHERE m.member_role = 'learner'
    ORDER BY 1, 2, 3
"""
_LOAD_ITEM_PARAMS = """
    SELECT p.tenant_id, p.item_id, p.a, p.b, p.c
    FROM irt_item_parameters AS p
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, item_id)
      ON p.tenant_id = k.tenant_id AND p.item_id = k.item_id
"""
_MATCHING_ANSWERS = """
    SELECT DISTINCT ON (event_id) user_id, session_id, event_id, occurred_at, group_key
    FROM fraud_group_wrong_answers
    WHERE tenant_id = $1 AND group_key = ANY($2::text[]) AND item_id = $3 AND response = $4
      AND occurred_at BETWEEN $5 AND $6 AND user_id <> $7
    ORDER BY event_id, group_key
"""
_INSERT_ANSWERS = """
    INSERT INTO fraud_group_wrong_answers (tenant_id, group_key, item_id, response, user_id,
                                           session_id, event_id, occurred_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::timestamptz[])
    ON CONFLICT DO NOTHING
"""
_LOAD_PARTNERS = """
    SELECT partner_user_id FROM fraud_collusion_partners WHERE tenant_id = $1 AND event_id = $2
"""
_INSERT_PARTNERS = """
    INSERT INTO fraud_collusion_partners (tenant_id, event_id, partner_user_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
"""
_LOAD_SIGNAL = """
    SELECT user_id, session_id, item_id, device_id, occurred_at, reasons, last_cause_id
    FROM fraud_signals WHERE tenant_id = $1 AND subject_kind = $2 AND subject_id = $3
    FOR UPDATE
"""
_UPSERT_SIGNAL = """
    INSERT INTO fraud_signals (tenant_id, subject_kind, subject_id, user_id, session_id, item_id,
                               device_id, occurred_at, score, w_rapid_response, w_person_misfit,
                               w_collusion, w_velocity, w_shared_device, reasons, flagged,
                               last_cause_id, updated_at, version)
    SELECT r.*, now(), 1
    FROM jsonb_to_recordset($1::jsonb) AS r(
        tenant_id text, subject_kind text, subject_id text, user_id text, session_id text,
        item_id text, device_id text, occurred_at timestamptz, score float8,
        w_rapid_response float8, w_person_misfit float8, w_collusion float8, w_velocity float8,
        w_shared_device float8, reasons jsonb, flagged boolean, last_cause_id text)
    ORDER BY r.tenant_id, r.subject_kind, r.subject_id
    ON CONFLICT (tenant_id, subject_kind, subject_id) DO UPDATE SET
        score = EXCLUDED.score,
        w_rapid_response = EXCLUDED.w_rapid_response,
        w_person_misfit = EXCLUDED.w_person_misfit,
        w_collusion = EXCLUDED.w_collusion,
        w_velocity = EXCLUDED.w_velocity,
        w_shared_device = EXCLUDED.w_shared_device,
        reasons = EXCLUDED.reasons,
        flagged = EXCLUDED.flagged,
        last_cause_id = EXCLUDED.last_cause_id,
        updated_at = EXCLUDED.updated_at,
        version = fraud_signals.version + 1
"""
_UPSERT_DEVICE_SESSION = """
    INSERT INTO fraud_device_sessions AS d (tenant_id, device_id, session_id, user_id,
                                            first_seen_at, last_seen_at)
    VALUES ($1, $2, $3, $4, $5, $5)
    ON CONFLICT (tenant_id, device_id, session_id, user_id) DO UPDATE SET
        first_seen_at = LEAST(d.first_seen_at, EXCLUDED.first_seen_at),
        last_seen_at = GREATEST(d.last_seen_at, EXCLUDED.last_seen_at)
    RETURNING first_seen_at, last_seen_at
"""
_DEVICE_SESSIONS_NEAR = """
    SELECT session_id, user_id, first_seen_at, last_seen_at FROM fraud_device_sessions
    WHERE tenant_id = $1 AND device_id = $2 AND last_seen_at >= $3 AND first_seen_at <= $4
    ORDER BY session_id, user_id
"""


# --- scoring ----------------------------------------------------------------------------


def individual_evidence(
    scored: ScoredAttempt,
    *,
    history: LearnerHistory,
    item: ResponseReference,
    skill: ResponseReference,
    calibrated: tuple[float, float, float] | None,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> tuple[list[FraudEvidence | None], LearnerHistory]:
    """The signals of one attempt that need only its learner and item; pure.

    Rapid response (against ``item``/``skill`` *before* this answer), person misfit
    over the history with this answer pushed (``calibrated`` item parameters, or the
    Rasch proxy), and velocity. Returns the evidence (None where a signal is silent)
    and the learner's history after the answer. Collusion needs other learners and
    is added by the processor; the false-positive bench replays logs through this too.
    """
    attempt = scored.attempt
    evidence: list[FraudEvidence | None] = [
        rapid_response(
            response_time_ms=scored.response_time_ms,
            correct=attempt.correct,
            item=item,
            skill=skill,
            config=config,
        )
    ]
    params = calibrated or (1.0, difficulty_proxy(item, skill), 0.0)
    history = history.push(
        attempt.event_id, attempt.occurred_at, attempt.score, params, config.history_size
    )
    evidence.append(person_misfit(history.a, history.b, history.c, history.scores, config))
    times = [t.timestamp() for t in history.occurred_at]
    evidence.append(velocity(times, attempt.occurred_at.timestamp(), config))
    return evidence, history


class FraudProcessor:
    """Fraud scores per attempt and per session; see the module docstring."""

    name = "fraud"
    sources = (Stream.ATTEMPTS, Stream.SESSIONS)

    def __init__(self, settings: Settings, *, config: FraudConfig = DEFAULT_FRAUD_CONFIG) -> None:
        self.config = config
        self.alert_threshold = settings.fraud_alert_threshold
        self._attempts_topic = settings.topic(Stream.ATTEMPTS)
        self._sessions_topic = settings.topic(Stream.SESSIONS)
        self._fraud_topic = settings.topic(Stream.FRAUD)

    def decode(self, record: SourceRecord) -> FraudInput:
        if record.topic == self._sessions_topic:
            return decode_session(record)
        return decode_scored_attempt(record)

    def event_id(self, event: FraudInput) -> str:
        return event.attempt.event_id if isinstance(event, ScoredAttempt) else event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[FraudInput]]
    ) -> list[OutgoingRecord]:
        """Score ``batch`` (attempts, then sessions: their state is disjoint); FraudScored out."""
        attempts = [i.event for i in batch if isinstance(i.event, ScoredAttempt)]
        sightings = [
            i.event
            for i in batch
            if isinstance(i.event, SessionSighting) and i.event.device_id and i.event.session_id
        ]
        out: list[OutgoingRecord] = []
        if attempts:
            out.extend(await self._score_attempts(conn, attempts))
        for sighting in sightings:
            out.extend(await self._score_sighting(conn, sighting))
        return out

    # -- attempts ---------------------------------------------------------------------

    async def _score_attempts(
        self, conn: asyncpg.Connection, attempts: list[ScoredAttempt]
    ) -> list[OutgoingRecord]:
        state = await _load_state(conn, attempts)
        out: list[OutgoingRecord] = []
        for scored in attempts:
            out.extend(await self._score_attempt(conn, state, scored))
        await _store_state(conn, state, self.alert_threshold)
        return out

    async def _score_attempt(
        self, conn: asyncpg.Connection, state: BatchState, scored: ScoredAttempt
    ) -> list[OutgoingRecord]:
        config = self.config
        attempt = scored.attempt
        learner = LearnerKey(attempt.tenant_id, attempt.user_id)
        history = state.histories.get(learner, LearnerHistory())
        if attempt.event_id in history.event_ids:
            return []  # the same attempt delivered again: already counted
        item_key = ReferenceKey(attempt.tenant_id, "item", scored.item_id)
        skill_keys = [ReferenceKey(attempt.tenant_id, "skill", s) for s in attempt.skill_ids]
        item_ref = state.references.get(item_key, EMPTY_REFERENCE)
        skill_ref = state.references.get(skill_keys[0], EMPTY_REFERENCE)
        evidence, history = individual_evidence(
            scored,
            history=history,
            item=item_ref,
            skill=skill_ref,
            calibrated=state.item_params.get((attempt.tenant_id, scored.item_id)),
            config=config,
        )
        state.histories[learner] = history
        out: list[OutgoingRecord] = []
        if not attempt.correct and scored.response is not None:
            found, rescored = await self._collusion(conn, state, scored, item_ref)
            evidence.append(found)
            out.extend(rescored)
            answer = AnswerKey(attempt.tenant_id, scored.item_id, scored.response)
            state.wrong_counts[answer] = state.wrong_counts.get(answer, 0) + 1
        for key in (item_key, *skill_keys):
            state.references[key] = observe(
                state.references.get(key, EMPTY_REFERENCE),
                response_time_ms=scored.response_time_ms,
                correct=attempt.correct,
                config=config,
            )
        subject = SubjectKey(attempt.tenant_id, ATTEMPT, attempt.event_id)
        row = SignalRow(
            user_id=attempt.user_id,
            session_id=attempt.session_id,
            item_id=scored.item_id,
            device_id="",
            occurred_at=attempt.occurred_at,
            evidence=tuple(
                sorted((e for e in evidence if e is not None), key=lambda e: e.signal.value)
            ),
            last_cause_id=attempt.event_id,
        )
        if row.evidence:
            state.signals[subject] = row
            state.dirty_signals.add(subject)
            out.append(self._fraud_scored(subject, row, cause_event_id=attempt.event_id))
        return out

    async def _collusion(
        self,
        conn: asyncpg.Connection,
        state: BatchState,
        scored: ScoredAttempt,
        item_ref: ResponseReference,
    ) -> tuple[FraudEvidence | None, list[OutgoingRecord]]:
        """Collusion evidence for a wrong answer, and the re-scores of its partners."""
        attempt = scored.attempt
        assert scored.response is not None
        learner = LearnerKey(attempt.tenant_id, attempt.user_id)
        groups = list(state.groups.get(learner, ()))
        if attempt.session_id:
            groups.append(f"session:{attempt.session_id}")
        if not groups:
            return None, []
        window = timedelta(seconds=self.config.collusion_window_s)
        low, high = attempt.occurred_at - window, attempt.occurred_at + window
        answer_key = AnswerKey(attempt.tenant_id, scored.item_id, scored.response)
        matches: dict[str, GroupAnswer] = {}
        rows = await conn.fetch(
            _MATCHING_ANSWERS,
            attempt.tenant_id,
            groups,
            scored.item_id,
            scored.response,
            low,
            high,
            attempt.user_id,
        )
        for r in rows:
            matches[r["event_id"]] = GroupAnswer(
                r["group_key"], r["user_id"], r["session_id"], r["event_id"], r["occurred_at"]
            )
        for key, answer in state.new_answers:
            if (
                key == answer_key
                and answer.group_key in groups
                and answer.user_id != attempt.user_id
                and low <= answer.occurred_at <= high
            ):
                matches.setdefault(answer.event_id, answer)
        for group_key in groups:
            state.new_answers.append(
                (
                    answer_key,
                    GroupAnswer(
                        group_key,
                        attempt.user_id,
                        attempt.session_id,
                        attempt.event_id,
                        attempt.occurred_at,
                    ),
                )
            )
        if not matches:
            return None, []
        wrong_total = item_ref.answers - item_ref.correct
        count = state.wrong_counts.get(answer_key, 0)
        if not is_uncommon(count, wrong_total, len(matches), self.config):
            return None, []
        own = SubjectKey(attempt.tenant_id, ATTEMPT, attempt.event_id)
        state.partners[own] = {m.user_id for m in matches.values()}
        state.new_partners.update((own, m.user_id) for m in matches.values())
        rescored: list[OutgoingRecord] = []
        for match in sorted(matches.values(), key=lambda m: m.event_id):
            partner = SubjectKey(attempt.tenant_id, ATTEMPT, match.event_id)
            partner_users = await _partners(conn, state, partner)
            if attempt.user_id in partner_users:
                continue
            partner_users.add(attempt.user_id)
            state.new_partners.add((partner, attempt.user_id))
            row = await _signal_row(conn, state, partner) or SignalRow(
                user_id=match.user_id,
                session_id=match.session_id,
                item_id=scored.item_id,
                device_id="",
                occurred_at=match.occurred_at,
                evidence=(),
                last_cause_id=match.event_id,
            )
            new_row = replace(
                row.with_evidence(
                    collusion(len(partner_users), scored.response, self.config),
                    FraudSignalKind.COLLUSION,
                ),
                last_cause_id=attempt.event_id,
            )
            state.signals[partner] = new_row
            state.dirty_signals.add(partner)
            rescored.append(self._fraud_scored(partner, new_row, cause_event_id=attempt.event_id))
        return collusion(len(state.partners[own]), scored.response, self.config), rescored

    # -- sessions -----------------------------------------------------------------------

    async def _score_sighting(
        self, conn: asyncpg.Connection, sighting: SessionSighting
    ) -> list[OutgoingRecord]:
        """Record the session on its device; re-score every session near it on the device."""
        window = timedelta(seconds=self.config.device_window_s)
        seen = await conn.fetchrow(
            _UPSERT_DEVICE_SESSION,
            sighting.tenant_id,
            sighting.device_id,
            sighting.session_id,
            sighting.user_id,
            sighting.occurred_at,
        )
        assert seen is not None
        nearby = await conn.fetch(
            _DEVICE_SESSIONS_NEAR,
            sighting.tenant_id,
            sighting.device_id,
            seen["first_seen_at"] - 2 * window,
            seen["last_seen_at"] + 2 * window,
        )
        sessions = [
            (r["session_id"], r["user_id"], r["first_seen_at"], r["last_seen_at"]) for r in nearby
        ]
        out: list[OutgoingRecord] = []
        for session_id, user_id, first, last in sessions:
            # Only sessions within the window of this one can have gained an account.
            if last < seen["first_seen_at"] - window or first > seen["last_seen_at"] + window:
                continue
            accounts = {
                other_user
                for _, other_user, other_first, other_last in sessions
                if other_last >= first - window and other_first <= last + window
            }
            found = shared_device(len(accounts), self.config)
            subject = SubjectKey(sighting.tenant_id, SESSION, session_id)
            row = await _load_signal(conn, subject)
            if found is None and row is None:
                continue
            base = row or SignalRow(
                user_id=user_id,
                session_id=session_id,
                item_id="",
                device_id=sighting.device_id,
                occurred_at=first,
                evidence=(),
                last_cause_id=sighting.event_id,
            )
            new_row = replace(
                base.with_evidence(found, FraudSignalKind.SHARED_DEVICE),
                last_cause_id=sighting.event_id,
            )
            if row is not None and new_row.evidence == row.evidence:
                continue
            await _write_signals(conn, {subject: new_row}, self.alert_threshold)
            out.append(self._fraud_scored(subject, new_row, cause_event_id=sighting.event_id))
        return out

    # -- events -------------------------------------------------------------------------

    def _fraud_scored(
        self, subject: SubjectKey, row: SignalRow, *, cause_event_id: str
    ) -> OutgoingRecord:
        """The FraudScored record of ``row``, keyed by its learner.

        ``cause_event_id`` is the event whose processing (re-)scored the subject; the
        record's event_id derives from it and the subject, so a replay repeats it
        exactly. The message's cause_event_id names the subject: the attempt's
        event_id, or for a session the SessionEvent that caused the score
        (``envelope.session_id`` names the session).
        """
        envelope = envelope_pb2.Envelope(
            event_id=derived_event_id(
                cause_event_id, f"fraud_scored:{subject.kind}:{subject.subject_id}"
            ),
            tenant_id=subject.tenant_id,
            user_id=row.user_id,
            session_id=row.session_id,
            source=envelope_pb2.Source(app="learnstream-processors", platform="server"),
        )
        envelope.occurred_at.FromDatetime(row.occurred_at)
        score = row.score
        message = derived_pb2.FraudScored(
            envelope=envelope,
            cause_event_id=subject.subject_id if subject.kind == ATTEMPT else cause_event_id,
            score=score,
            reasons=[
                derived_pb2.FraudReason(
                    signal=_SIGNAL_TO_PROTO[e.signal], weight=e.weight, detail=e.detail
                )
                for e in row.evidence
            ],
            alert=score >= self.alert_threshold,
        )
        return OutgoingRecord(
            topic=self._fraud_topic,
            key=learner_key(subject.tenant_id, row.user_id),
            value=message.SerializeToString(),
        )


# --- state I/O ----------------------------------------------------------------------------


async def _load_state(conn: asyncpg.Connection, attempts: Sequence[ScoredAttempt]) -> BatchState:
    learners = sorted({LearnerKey(s.attempt.tenant_id, s.attempt.user_id) for s in attempts})
    histories = {
        LearnerKey(r["tenant_id"], r["user_id"]): LearnerHistory(
            tuple(r["event_ids"]),
            tuple(r["occurred_at"]),
            tuple(r["scores"]),
            tuple(r["a"]),
            tuple(r["b"]),
            tuple(r["c"]),
        )
        for r in await conn.fetch(
            _LOAD_HISTORIES, [k.tenant_id for k in learners], [k.user_id for k in learners]
        )
    }
    reference_keys = sorted(
        {ReferenceKey(s.attempt.tenant_id, "item", s.item_id) for s in attempts}
        | {
            ReferenceKey(s.attempt.tenant_id, "skill", k)
            for s in attempts
            for k in s.attempt.skill_ids
        }
    )
    columns = (
        [k.tenant_id for k in reference_keys],
        [k.scope for k in reference_keys],
        [k.scope_id for k in reference_keys],
    )
    await conn.execute(_ENSURE_REFERENCES, *columns, list(empty_histogram()))
    references = {
        ReferenceKey(r["tenant_id"], r["scope"], r["scope_id"]): ResponseReference(
            tuple(r["rt_counts"]), r["answers"], r["correct"]
        )
        for r in await conn.fetch(_LOAD_REFERENCES, *columns)
    }
    answer_keys = sorted(
        {
            AnswerKey(s.attempt.tenant_id, s.item_id, s.response)
            for s in attempts
            if s.response is not None and not s.attempt.correct
        }
    )
    wrong_counts: dict[AnswerKey, int] = {}
    if answer_keys:
        answer_columns = (
            [k.tenant_id for k in answer_keys],
            [k.item_id for k in answer_keys],
            [k.response for k in answer_keys],
        )
        await conn.execute(_ENSURE_WRONG_COUNTS, *answer_columns)
        wrong_counts = {
            AnswerKey(r["tenant_id"], r["item_id"], r["response"]): r["answers"]
            for r in await conn.fetch(_LOAD_WRONG_COUNTS, *answer_columns)
        }
    items = sorted({(s.attempt.tenant_id, s.item_id) for s in attempts})
    calibrated = await conn.fetch(_LOAD_ITEM_PARAMS, [t for t, _ in items], [i for _, i in items])
    return BatchState(
        histories=histories,
        references=references,
        wrong_counts=wrong_counts,
        groups=await _load_groups(conn, learners),
        item_params={(r["tenant_id"], r["item_id"]): (r["a"], r["b"], r["c"]) for r in calibrated},
    )


async def _load_groups(
    conn: asyncpg.Connection, learners: Sequence[LearnerKey]
) -> dict[LearnerKey, tuple[str, ...]]:
    """Each learner's class groups (``class:<uuid>``); learners whose id is no UUID have none."""
    by_uuid: dict[tuple[str, str], LearnerKey] = {}
    for learner in learners:
        try:
            by_uuid[(learner.tenant_id, str(uuid.UUID(learner.user_id)))] = learner
        except ValueError:
            continue
    if not by_uuid:
        return {}
    keys = sorted(by_uuid)
    rows = await conn.fetch(_LOAD_CLASSES, [t for t, _ in keys], [uuid.UUID(u) for _, u in keys])
    groups: dict[LearnerKey, list[str]] = {}
    for r in rows:
        learner = by_uuid[(r["tenant_id"], r["user_id"])]
        groups.setdefault(learner, []).append(f"class:{r['class_id']}")
    return {k: tuple(v) for k, v in groups.items()}


async def _partners(conn: asyncpg.Connection, state: BatchState, subject: SubjectKey) -> set[str]:
    """The partner learners of an attempt (stored plus found in this batch), cached per batch."""
    if subject not in state.partners:
        rows = await conn.fetch(_LOAD_PARTNERS, subject.tenant_id, subject.subject_id)
        state.partners[subject] = {r["partner_user_id"] for r in rows}
    return state.partners[subject]


async def _signal_row(
    conn: asyncpg.Connection, state: BatchState, subject: SubjectKey
) -> SignalRow | None:
    """The subject's fraud_signals row (this batch's version first), cached per batch."""
    if subject not in state.signals:
        state.signals[subject] = await _load_signal(conn, subject)
    return state.signals[subject]


async def _load_signal(conn: asyncpg.Connection, subject: SubjectKey) -> SignalRow | None:
    r = await conn.fetchrow(_LOAD_SIGNAL, *subject)
    if r is None:
        return None
    evidence = tuple(
        FraudEvidence(FraudSignalKind(e["signal"]), float(e["weight"]), str(e["detail"]))
        for e in json.loads(r["reasons"])
    )
    return SignalRow(
        user_id=r["user_id"],
        session_id=r["session_id"],
        item_id=r["item_id"],
        device_id=r["device_id"],
        occurred_at=r["occurred_at"],
        evidence=evidence,
        last_cause_id=r["last_cause_id"],
    )


def signal_record(subject: SubjectKey, row: SignalRow, alert_threshold: float) -> dict[str, object]:
    """``row`` as one record of the fraud_signals upsert (JSON-ready)."""
    weights = {e.signal: e.weight for e in row.evidence}
    score = row.score
    record: dict[str, object] = {
        "tenant_id": subject.tenant_id,
        "subject_kind": subject.kind,
        "subject_id": subject.subject_id,
        "user_id": row.user_id,
        "session_id": row.session_id,
        "item_id": row.item_id,
        "device_id": row.device_id,
        "occurred_at": row.occurred_at.isoformat(),
        "score": score,
        "reasons": [
            {"signal": e.signal.value, "weight": e.weight, "detail": e.detail} for e in row.evidence
        ],
        "flagged": score >= alert_threshold,
        "last_cause_id": row.last_cause_id,
    }
    for signal, column in _WEIGHT_COLUMNS.items():
        record[column] = weights.get(signal, 0.0)
    return record


async def _write_signals(
    conn: asyncpg.Connection, rows: Mapping[SubjectKey, SignalRow], alert_threshold: float
) -> None:
    if rows:
        records = [signal_record(k, rows[k], alert_threshold) for k in sorted(rows)]
        await conn.execute(_UPSERT_SIGNAL, json.dumps(records))


async def _store_state(conn: asyncpg.Connection, state: BatchState, alert_threshold: float) -> None:
    histories = [
        {
            "tenant_id": k.tenant_id,
            "user_id": k.user_id,
            "event_ids": list(h.event_ids),
            "occurred_at": [t.isoformat() for t in h.occurred_at],
            "scores": list(h.scores),
            "a": list(h.a),
            "b": list(h.b),
            "c": list(h.c),
        }
        for k, h in sorted(state.histories.items())
    ]
    if histories:
        await conn.execute(_UPSERT_HISTORIES, json.dumps(histories))
    references = [
        {
            "tenant_id": k.tenant_id,
            "scope": k.scope,
            "scope_id": k.scope_id,
            "rt_counts": list(v.rt_counts),
            "answers": v.answers,
            "correct": v.correct,
        }
        for k, v in sorted(state.references.items())
    ]
    if references:
        await conn.execute(_STORE_REFERENCES, json.dumps(references))
    if state.wrong_counts:
        keys = sorted(state.wrong_counts)
        await conn.execute(
            _STORE_WRONG_COUNTS,
            [k.tenant_id for k in keys],
            [k.item_id for k in keys],
            [k.response for k in keys],
            [state.wrong_counts[k] for k in keys],
        )
    if state.new_answers:
        answers = state.new_answers
        await conn.execute(
            _INSERT_ANSWERS,
            [k.tenant_id for k, _ in answers],
            [a.group_key for _, a in answers],
            [k.item_id for k, _ in answers],
            [k.response for k, _ in answers],
            [a.user_id for _, a in answers],
            [a.session_id for _, a in answers],
            [a.event_id for _, a in answers],
            [a.occurred_at for _, a in answers],
        )
    if state.new_partners:
        links = sorted(state.new_partners)
        await conn.execute(
            _INSERT_PARTNERS,
            [s.tenant_id for s, _ in links],
            [s.subject_id for s, _ in links],
            [user for _, user in links],
        )
    dirty = {k: row for k in state.dirty_signals if (row := state.signals.get(k)) is not None}
    await _write_signals(conn, dirty, alert_threshold)
