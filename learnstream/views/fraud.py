"""The fraud processor's state and its ``fraud_signals`` view: row SQL, batch load and store.

Written by the fraud processor (:mod:`processors.fraud`); ``fraud_signals`` (and the
``flagged_attempts``/``flagged_sessions`` views over it) is read by the operator API
and the analyses. A batch is loaded whole before scoring (:func:`load_attempt_inputs`,
:func:`load_sighting_inputs`), scored by :mod:`scheduler.fraud_batch` without I/O, and
written at the end (:func:`store_attempt_outcome`, :func:`store_sighting_outcome`).

Locking. Per-learner rows (histories) belong to the learner's partition. Shared rows
(response-time references, wrong-answer counts) are created empty before they are
locked, so two workers never both insert one and lose an update; every ``ORDER BY``
gives all workers the same lock order. The signal rows a batch may re-score are
locked ``FOR UPDATE`` when loaded. Group answers, collusion partners and device
sessions are insert/extend-only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from learnstream.db import Queryable
from learnstream.views.calibration import load_items_of
from scheduler.fraud import (
    FraudConfig,
    FraudEvidence,
    FraudSignalKind,
    ResponseReference,
    empty_histogram,
)
from scheduler.fraud_batch import (
    ATTEMPT,
    SESSION,
    AnswerKey,
    AttemptInputs,
    AttemptOutcome,
    DeviceSessionKey,
    GroupAnswer,
    Learner,
    LearnerHistory,
    ReferenceKey,
    ScoredAnswer,
    Sighting,
    SightingInputs,
    SightingOutcome,
    SignalRow,
    SubjectKey,
)

# The weight column of each signal in fraud_signals.
WEIGHT_COLUMNS = {
    FraudSignalKind.RAPID_RESPONSE: "w_rapid_response",
    FraudSignalKind.PERSON_MISFIT: "w_person_misfit",
    FraudSignalKind.COLLUSION: "w_collusion",
    FraudSignalKind.IMPOSSIBLE_VELOCITY: "w_velocity",
    FraudSignalKind.SHARED_DEVICE: "w_shared_device",
}

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
_INSERT_ANSWERS = """
    INSERT INTO fraud_group_wrong_answers (tenant_id, group_key, item_id, response, user_id,
                                           session_id, event_id, occurred_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::timestamptz[])
    ON CONFLICT DO NOTHING
"""
_INSERT_PARTNERS = """
    INSERT INTO fraud_collusion_partners (tenant_id, event_id, partner_user_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
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
_CANDIDATE_ANSWERS = """
    SELECT DISTINCT a.tenant_id, a.item_id, a.response, a.group_key, a.user_id, a.session_id,
           a.event_id, a.occurred_at
    FROM fraud_group_wrong_answers AS a
    JOIN unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
      AS k(tenant_id, item_id, response, low, high)
      ON a.tenant_id = k.tenant_id AND a.item_id = k.item_id AND a.response = k.response
     AND a.occurred_at BETWEEN k.low AND k.high
    WHERE a.group_key = ANY($6::text[])
"""
_LOAD_PARTNERS = """
    SELECT p.tenant_id, p.event_id, p.partner_user_id
    FROM fraud_collusion_partners AS p
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, event_id)
      ON p.tenant_id = k.tenant_id AND p.event_id = k.event_id
"""
_LOCK_SIGNALS = """
    SELECT s.tenant_id, s.subject_kind, s.subject_id, s.user_id, s.session_id, s.item_id,
           s.device_id, s.occurred_at, s.reasons, s.last_cause_id
    FROM fraud_signals AS s
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, subject_kind, subject_id)
      ON s.tenant_id = k.tenant_id AND s.subject_kind = k.subject_kind
     AND s.subject_id = k.subject_id
    ORDER BY s.tenant_id, s.subject_kind, s.subject_id
    FOR UPDATE OF s
"""
_LOAD_DEVICE_SESSIONS = """
    SELECT d.tenant_id, d.device_id, d.session_id, d.user_id, d.first_seen_at, d.last_seen_at
    FROM fraud_device_sessions AS d
    JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[])
      AS k(tenant_id, device_id, session_id, user_id)
      ON d.tenant_id = k.tenant_id AND d.device_id = k.device_id
     AND d.session_id = k.session_id AND d.user_id = k.user_id
"""
_DEVICE_SESSIONS_NEAR = """
    SELECT d.tenant_id, d.device_id, d.session_id, d.user_id, d.first_seen_at, d.last_seen_at
    FROM fraud_device_sessions AS d
    JOIN unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
      AS k(tenant_id, device_id, low, high)
      ON d.tenant_id = k.tenant_id AND d.device_id = k.device_id
     AND d.last_seen_at >= k.low AND d.first_seen_at <= k.high
"""
_UPSERT_DEVICE_SESSIONS = """
    INSERT INTO fraud_device_sessions AS d (tenant_id, device_id, session_id, user_id,
                                            first_seen_at, last_seen_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[])
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, device_id, session_id, user_id) DO UPDATE SET
        first_seen_at = LEAST(d.first_seen_at, EXCLUDED.first_seen_at),
        last_seen_at = GREATEST(d.last_seen_at, EXCLUDED.last_seen_at)
"""


# --- attempts: load -----------------------------------------------------------------------


async def load_attempt_inputs(
    conn: Queryable, attempts: Sequence[ScoredAnswer], config: FraudConfig
) -> AttemptInputs:
    """Everything scoring ``attempts`` reads, with the rows it may change locked."""
    learners = sorted({(s.tenant_id, s.user_id) for s in attempts})
    histories = {
        (r["tenant_id"], r["user_id"]): LearnerHistory(
            tuple(r["event_ids"]),
            tuple(r["occurred_at"]),
            tuple(r["scores"]),
            tuple(r["a"]),
            tuple(r["b"]),
            tuple(r["c"]),
        )
        for r in await conn.fetch(
            _LOAD_HISTORIES, [t for t, _ in learners], [u for _, u in learners]
        )
    }
    references = await _lock_references(conn, attempts)
    wrong_counts = await _lock_wrong_counts(conn, attempts)
    groups = await _load_groups(conn, learners)
    items = sorted({(s.tenant_id, s.item_id) for s in attempts})
    calibrated = await load_items_of(conn, items)
    stored_answers = await _candidate_answers(conn, attempts, groups, config)
    # Every attempt a wrong answer of the batch can match: stored ones and the batch's.
    subjects = sorted(
        {SubjectKey(k.tenant_id, ATTEMPT, a.event_id) for k, a in stored_answers}
        | {
            SubjectKey(s.tenant_id, ATTEMPT, s.event_id)
            for s in attempts
            if not s.correct and s.response is not None
        }
    )
    return AttemptInputs(
        histories=histories,
        references=references,
        wrong_counts=wrong_counts,
        groups=groups,
        item_params={key: (p.a, p.b, p.c) for key, p in calibrated.items()},
        stored_answers=stored_answers,
        partners=await _load_partners(conn, subjects),
        signals=await lock_signals(conn, subjects),
    )


async def _lock_references(
    conn: Queryable, attempts: Sequence[ScoredAnswer]
) -> dict[ReferenceKey, ResponseReference]:
    keys = sorted(
        {ReferenceKey(s.tenant_id, "item", s.item_id) for s in attempts}
        | {ReferenceKey(s.tenant_id, "skill", k) for s in attempts for k in s.skill_ids}
    )
    columns = ([k.tenant_id for k in keys], [k.scope for k in keys], [k.scope_id for k in keys])
    await conn.execute(_ENSURE_REFERENCES, *columns, list(empty_histogram()))
    return {
        ReferenceKey(r["tenant_id"], r["scope"], r["scope_id"]): ResponseReference(
            tuple(r["rt_counts"]), r["answers"], r["correct"]
        )
        for r in await conn.fetch(_LOAD_REFERENCES, *columns)
    }


async def _lock_wrong_counts(
    conn: Queryable, attempts: Sequence[ScoredAnswer]
) -> dict[AnswerKey, int]:
    keys = sorted(
        {
            AnswerKey(s.tenant_id, s.item_id, s.response)
            for s in attempts
            if s.response is not None and not s.correct
        }
    )
    if not keys:
        return {}
    columns = ([k.tenant_id for k in keys], [k.item_id for k in keys], [k.response for k in keys])
    await conn.execute(_ENSURE_WRONG_COUNTS, *columns)
    return {
        AnswerKey(r["tenant_id"], r["item_id"], r["response"]): r["answers"]
        for r in await conn.fetch(_LOAD_WRONG_COUNTS, *columns)
    }


async def _load_groups(
    conn: Queryable, learners: Sequence[Learner]
) -> dict[Learner, tuple[str, ...]]:
    """Each learner's class groups (``class:<uuid>``); learners whose id is no UUID have none."""
    by_uuid: dict[tuple[str, str], Learner] = {}
    for learner in learners:
        try:
            by_uuid[(learner[0], str(uuid.UUID(learner[1])))] = learner
        except ValueError:
            continue
    if not by_uuid:
        return {}
    keys = sorted(by_uuid)
    rows = await conn.fetch(_LOAD_CLASSES, [t for t, _ in keys], [uuid.UUID(u) for _, u in keys])
    groups: dict[Learner, list[str]] = {}
    for r in rows:
        learner = by_uuid[(r["tenant_id"], r["user_id"])]
        groups.setdefault(learner, []).append(f"class:{r['class_id']}")
    return {k: tuple(v) for k, v in groups.items()}


async def _candidate_answers(
    conn: Queryable,
    attempts: Sequence[ScoredAnswer],
    groups: Mapping[Learner, tuple[str, ...]],
    config: FraudConfig,
) -> list[tuple[AnswerKey, GroupAnswer]]:
    """Stored wrong answers the batch's wrong answers may match (scoring filters them)."""
    window = timedelta(seconds=config.collusion_window_s)
    wanted: list[tuple[str, str, str, datetime, datetime]] = []
    group_keys: set[str] = set()
    for s in attempts:
        if s.correct or s.response is None:
            continue
        mine = [*groups.get((s.tenant_id, s.user_id), ())]
        if s.session_id:
            mine.append(f"session:{s.session_id}")
        if mine:
            group_keys.update(mine)
            wanted.append(
                (s.tenant_id, s.item_id, s.response, s.occurred_at - window, s.occurred_at + window)
            )
    if not wanted:
        return []
    rows = await conn.fetch(_CANDIDATE_ANSWERS, *zip(*wanted, strict=True), sorted(group_keys))
    return [
        (
            AnswerKey(r["tenant_id"], r["item_id"], r["response"]),
            GroupAnswer(
                r["group_key"], r["user_id"], r["session_id"], r["event_id"], r["occurred_at"]
            ),
        )
        for r in rows
    ]


async def _load_partners(
    conn: Queryable, subjects: Sequence[SubjectKey]
) -> dict[SubjectKey, frozenset[str]]:
    if not subjects:
        return {}
    rows = await conn.fetch(
        _LOAD_PARTNERS, [s.tenant_id for s in subjects], [s.subject_id for s in subjects]
    )
    found: dict[SubjectKey, set[str]] = {}
    for r in rows:
        found.setdefault(SubjectKey(r["tenant_id"], ATTEMPT, r["event_id"]), set()).add(
            r["partner_user_id"]
        )
    return {k: frozenset(v) for k, v in found.items()}


async def lock_signals(
    conn: Queryable, subjects: Sequence[SubjectKey]
) -> dict[SubjectKey, SignalRow]:
    """The stored ``fraud_signals`` rows of ``subjects`` (absent: score 0), locked."""
    if not subjects:
        return {}
    rows = await conn.fetch(
        _LOCK_SIGNALS,
        [s.tenant_id for s in subjects],
        [s.kind for s in subjects],
        [s.subject_id for s in subjects],
    )
    return {
        SubjectKey(r["tenant_id"], r["subject_kind"], r["subject_id"]): signal_from_row(r)
        for r in rows
    }


def signal_from_row(r: Any) -> SignalRow:
    """A :class:`SignalRow` from a ``fraud_signals`` row (the reasons JSON decoded)."""
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


# --- attempts: store ----------------------------------------------------------------------


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
    for signal, column in WEIGHT_COLUMNS.items():
        record[column] = weights.get(signal, 0.0)
    return record


async def write_signals(
    conn: Queryable, rows: Mapping[SubjectKey, SignalRow], alert_threshold: float
) -> None:
    """Upsert ``rows`` into ``fraud_signals`` (``flagged`` at ``alert_threshold``)."""
    if rows:
        records = [signal_record(k, rows[k], alert_threshold) for k in sorted(rows)]
        await conn.execute(_UPSERT_SIGNAL, json.dumps(records))


async def store_attempt_outcome(
    conn: Queryable, outcome: AttemptOutcome, alert_threshold: float
) -> None:
    """Write what scoring a batch of attempts changed."""
    histories = [
        {
            "tenant_id": tenant,
            "user_id": user,
            "event_ids": list(h.event_ids),
            "occurred_at": [t.isoformat() for t in h.occurred_at],
            "scores": list(h.scores),
            "a": list(h.a),
            "b": list(h.b),
            "c": list(h.c),
        }
        for (tenant, user), h in sorted(outcome.histories.items())
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
        for k, v in sorted(outcome.references.items())
    ]
    if references:
        await conn.execute(_STORE_REFERENCES, json.dumps(references))
    if outcome.wrong_counts:
        keys = sorted(outcome.wrong_counts)
        await conn.execute(
            _STORE_WRONG_COUNTS,
            [k.tenant_id for k in keys],
            [k.item_id for k in keys],
            [k.response for k in keys],
            [outcome.wrong_counts[k] for k in keys],
        )
    await _insert_answers(conn, outcome.new_answers)
    if outcome.new_partners:
        links = sorted(outcome.new_partners)
        await conn.execute(
            _INSERT_PARTNERS,
            [s.tenant_id for s, _ in links],
            [s.subject_id for s, _ in links],
            [user for _, user in links],
        )
    await write_signals(conn, outcome.signals, alert_threshold)


async def _insert_answers(
    conn: Queryable, answers: Sequence[tuple[AnswerKey, GroupAnswer]]
) -> None:
    if answers:
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


# --- sessions -----------------------------------------------------------------------------


async def load_sighting_inputs(
    conn: Queryable, sightings: Sequence[Sighting], config: FraudConfig
) -> SightingInputs:
    """The device sessions near ``sightings`` (a superset) and their signal rows, locked.

    First the sighted (device, session, account) rows, to know how far each sighted
    session reaches once the batch is applied; then every session on those devices
    within twice the device window of that reach, which covers what each sighting in
    turn looks at.
    """
    window = timedelta(seconds=config.device_window_s)
    keys = sorted(
        {DeviceSessionKey(s.tenant_id, s.device_id, s.session_id, s.user_id) for s in sightings}
    )
    if not keys:
        return SightingInputs({}, {})
    reach = _sessions(await conn.fetch(_LOAD_DEVICE_SESSIONS, *zip(*keys, strict=True)))
    for s in sightings:
        key = DeviceSessionKey(s.tenant_id, s.device_id, s.session_id, s.user_id)
        first, last = reach.get(key, (s.occurred_at, s.occurred_at))
        reach[key] = (min(first, s.occurred_at), max(last, s.occurred_at))
    bounds: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for key, (first, last) in reach.items():
        device = (key.tenant_id, key.device_id)
        low, high = bounds.get(device, (first, last))
        bounds[device] = (min(low, first), max(high, last))
    devices = sorted(bounds)
    sessions = _sessions(
        await conn.fetch(
            _DEVICE_SESSIONS_NEAR,
            [t for t, _ in devices],
            [d for _, d in devices],
            [bounds[d][0] - 2 * window for d in devices],
            [bounds[d][1] + 2 * window for d in devices],
        )
    )
    subjects = sorted({SubjectKey(k.tenant_id, SESSION, k.session_id) for k in [*sessions, *keys]})
    return SightingInputs(sessions, await lock_signals(conn, subjects))


def _sessions(rows: Iterable[Any]) -> dict[DeviceSessionKey, tuple[datetime, datetime]]:
    return {
        DeviceSessionKey(r["tenant_id"], r["device_id"], r["session_id"], r["user_id"]): (
            r["first_seen_at"],
            r["last_seen_at"],
        )
        for r in rows
    }


async def store_sighting_outcome(
    conn: Queryable, outcome: SightingOutcome, alert_threshold: float
) -> None:
    """Write the sighted device sessions (widening stored spans) and the changed signals."""
    if outcome.device_sessions:
        keys = sorted(outcome.device_sessions)
        await conn.execute(
            _UPSERT_DEVICE_SESSIONS,
            *zip(*keys, strict=True),
            [outcome.device_sessions[k][0] for k in keys],
            [outcome.device_sessions[k][1] for k in keys],
        )
    await write_signals(conn, outcome.signals, alert_threshold)
