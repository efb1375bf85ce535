"""The mastery processor: attempts in, per-skill BKT mastery out.

For every AttemptEvent (key ``tenant:user``) and every skill it exercises, the
learner's P(mastered) moves by one Bayesian Knowledge Tracing step
(:func:`scheduler.bkt.update`), starting from the prior for a skill never seen.
The ``skill_mastery`` view is updated and a ``MasteryUpdated`` event (keyed by
learner, deterministic event_id) goes to the mastery topic. Exactly-once effect,
dead-lettering and retries come from :mod:`processors.base`.

Per batch: one query loads (and locks) every row the batch touches, the batch is
replayed in memory in offset order (so a learner's consecutive attempts chain),
and one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`` writes the
final state of every touched row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from google.protobuf import timestamp_pb2

from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.views.mastery import MasteryKey, MasteryState
from processors.base import Decoded
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, decode_learner_event, derived_event_id
from scheduler.bkt import DEFAULT_PARAMS, BKTParams, predict_correct, update

MODEL = "bkt"
DERIVED_KIND = "mastery_updated"
_SOURCE = envelope_pb2.Source(app="learnstream-processors", platform="server")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_LOAD_ROWS = """
    SELECT s.tenant_id, s.user_id, s.skill_id, s.p_mastery, s.attempts, s.correct,
           s.last_event_id, s.last_attempt_at
    FROM skill_mastery AS s
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS wanted(tenant_id, user_id, skill_id)
      ON s.tenant_id = wanted.tenant_id AND s.user_id = wanted.user_id
     AND s.skill_id = wanted.skill_id
    ORDER BY s.tenant_id, s.user_id, s.skill_id
    FOR UPDATE OF s
"""
_UPSERT_ROWS = """
    INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                               last_event_id, last_attempt_at, updated_at, version)
    SELECT r.tenant_id, r.user_id, r.skill_id, r.p_mastery, r.attempts, r.correct,
           r.last_event_id, r.last_attempt_at, now(), 1
    FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::int[],
                $7::uuid[], $8::timestamptz[])
      AS r(tenant_id, user_id, skill_id, p_mastery, attempts, correct, last_event_id,
           last_attempt_at)
    ON CONFLICT (tenant_id, user_id, skill_id) DO UPDATE SET
        p_mastery = EXCLUDED.p_mastery,
        attempts = EXCLUDED.attempts,
        correct = EXCLUDED.correct,
        last_event_id = EXCLUDED.last_event_id,
        last_attempt_at = EXCLUDED.last_attempt_at,
        updated_at = EXCLUDED.updated_at,
        version = skill_mastery.version + 1
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The fields of an AttemptEvent the mastery update uses, validated."""

    event_id: str  # UUID string
    tenant_id: str
    user_id: str
    session_id: str
    skill_ids: tuple[str, ...]  # at least one, no duplicates, in event order
    correct: bool
    score: float  # in [0, 1]: the partial credit, or 1/0 from ``correct``
    occurred_at: datetime  # UTC
    # The rest of the event, for processors that keep more than mastery (learner_state).
    item_id: str = ""
    item_version: int | None = None  # None when not given (0 on the wire)
    response_time_ms: int | None = None  # >= 0; None when not reported (0 on the wire)
    hint_count: int = 0
    attempt_number: int | None = None  # None when not given (0 on the wire)
    context: str | None = None  # AttemptContext name without prefix, e.g. "PRACTICE"
    received_at: datetime | None = None  # UTC, set by ingest


@dataclass(frozen=True, slots=True)
class SkillStep:
    """One skill's BKT step caused by one attempt."""

    skill_id: str
    p_mastery_before: float
    p_mastery: float
    p_correct_predicted: float
    attempts: int  # on this skill, this attempt included


@dataclass(frozen=True, slots=True)
class AttemptUpdate:
    """The steps one attempt caused; empty when it was a repeat of the last attempt applied."""

    attempt: Attempt
    steps: tuple[SkillStep, ...]


def decode_attempt(record: SourceRecord) -> Attempt:
    """Parse and validate an AttemptEvent record; PoisonEvent says what is wrong.

    Checked: valid protobuf, a UUID event_id, tenant and user ids, the record key
    ``tenant:user`` (a learner's attempts must share a partition to stay ordered),
    at least one skill, occurred_at set, score in [0, 1] when given.
    """
    event, event_id = decode_learner_event(record, attempt_pb2.AttemptEvent)
    envelope = event.envelope
    skill_ids = tuple(dict.fromkeys(s for s in event.skill_ids if s))
    if not skill_ids:
        raise PoisonEvent(f"event {event_id}: an attempt needs at least one skill_id")
    if event.HasField("score"):
        score = event.score
        if not 0.0 <= score <= 1.0:  # also false for NaN
            raise PoisonEvent(f"event {event_id}: score {score} is outside [0, 1]")
    else:
        score = 1.0 if event.correct else 0.0
    if event.response_time_ms < 0 or event.hint_count < 0:
        raise PoisonEvent(f"event {event_id}: response_time_ms and hint_count must be >= 0")
    context = attempt_pb2.AttemptContext.Name(event.context).removeprefix("ATTEMPT_CONTEXT_")
    return Attempt(
        event_id=event_id,
        tenant_id=envelope.tenant_id,
        user_id=envelope.user_id,
        session_id=envelope.session_id,
        skill_ids=skill_ids,
        correct=event.correct,
        score=score,
        occurred_at=envelope.occurred_at.ToDatetime(tzinfo=UTC),
        item_id=event.item_id,
        item_version=event.item_version or None,
        response_time_ms=event.response_time_ms or None,
        hint_count=event.hint_count,
        attempt_number=event.attempt_number or None,
        context=None if context == "UNSPECIFIED" else context,
        received_at=(
            envelope.received_at.ToDatetime(tzinfo=UTC)
            if envelope.HasField("received_at")
            else None
        ),
    )


def clamp_probability(p: float) -> float:
    """``p`` limited to [0, 1].

    scheduler.bkt.update can land one rounding step outside [0, 1] (1.0000000000000002
    after a long run of correct answers), which skill_mastery's CHECK rejects.
    Clamping every step, not only the stored value, keeps the chain the same
    whichever batches the attempts fall into.
    """
    return min(max(p, 0.0), 1.0)


def chain_updates(
    attempts: Sequence[Attempt],
    states: Mapping[MasteryKey, MasteryState],
    params: BKTParams = DEFAULT_PARAMS,
    *,
    skill_params: Mapping[tuple[str, str], BKTParams] | None = None,
) -> tuple[dict[MasteryKey, MasteryState], list[AttemptUpdate]]:
    """Apply ``attempts`` in order to ``states``; pure.

    A skill without a state starts from ``params.prior``; every step is
    :func:`scheduler.bkt.update` clamped to [0, 1]. Each attempt sees the
    state left by the previous ones, so a learner's consecutive attempts in one
    batch chain exactly as if applied one by one. An attempt whose event_id is the
    skill's ``last_event_id`` (a duplicate delivered right after itself) changes
    nothing. ``skill_params`` maps ``(tenant_id, skill_id)`` to fitted parameters;
    skills not in it use ``params``. Returns the new state of every key touched, and
    per attempt its steps.
    """
    fitted = skill_params or {}
    touched: dict[MasteryKey, MasteryState] = {}
    updates: list[AttemptUpdate] = []
    for attempt in attempts:
        steps: list[SkillStep] = []
        for skill_id in attempt.skill_ids:
            key = MasteryKey(attempt.tenant_id, attempt.user_id, skill_id)
            state = touched.get(key) or states.get(key)
            if state is not None and state.last_event_id == attempt.event_id:
                continue
            skill = fitted.get((attempt.tenant_id, skill_id), params)
            p_before = skill.prior if state is None else state.p_mastery
            p_after = clamp_probability(update(p_before, attempt.score, skill))
            new_state = MasteryState(
                p_mastery=p_after,
                attempts=(0 if state is None else state.attempts) + 1,
                correct=(0 if state is None else state.correct) + int(attempt.correct),
                last_event_id=attempt.event_id,
                last_attempt_at=attempt.occurred_at,
            )
            touched[key] = new_state
            steps.append(
                SkillStep(
                    skill_id=skill_id,
                    p_mastery_before=p_before,
                    p_mastery=p_after,
                    p_correct_predicted=predict_correct(p_before, skill),
                    attempts=new_state.attempts,
                )
            )
        updates.append(AttemptUpdate(attempt, tuple(steps)))
    return touched, updates


def mastery_updated(update: AttemptUpdate, *, topic: str) -> OutgoingRecord:
    """The MasteryUpdated record of one attempt's steps, keyed by learner.

    Everything in it comes from the attempt and the steps (no clock), so the
    record is identical when the attempt is reprocessed.
    """
    attempt = update.attempt
    # Timestamp.FromDatetime's arithmetic (whole seconds since the epoch, floored, and
    # microseconds), without its time tuple.
    since_epoch = attempt.occurred_at - _EPOCH
    envelope = envelope_pb2.Envelope(
        event_id=derived_event_id(attempt.event_id, DERIVED_KIND),
        tenant_id=attempt.tenant_id,
        user_id=attempt.user_id,
        session_id=attempt.session_id,
        source=_SOURCE,
        occurred_at=timestamp_pb2.Timestamp(
            seconds=since_epoch.days * 86_400 + since_epoch.seconds,
            nanos=since_epoch.microseconds * 1_000,
        ),
    )
    message = derived_pb2.MasteryUpdated(
        envelope=envelope,
        cause_event_id=attempt.event_id,
        model=MODEL,
        skills=[
            derived_pb2.SkillMastery(
                skill_id=step.skill_id,
                p_mastery_before=step.p_mastery_before,
                p_mastery=step.p_mastery,
                p_correct_predicted=step.p_correct_predicted,
                attempts=step.attempts,
            )
            for step in update.steps
        ],
    )
    return OutgoingRecord(
        topic=topic,
        key=learner_key(attempt.tenant_id, attempt.user_id),
        value=message.SerializeToString(),
    )


class MasteryProcessor:
    """BKT mastery per (tenant, user, skill); see the module docstring."""

    name = "mastery"
    sources = (Stream.ATTEMPTS,)

    def __init__(self, settings: Settings, *, params: BKTParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self._mastery_topic = settings.topic(Stream.MASTERY)

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]
    ) -> list[OutgoingRecord]:
        """Update ``skill_mastery`` for ``batch`` in two statements; return MasteryUpdated."""
        attempts = [item.event for item in batch]
        states = await _load_states(conn, attempts)
        touched, updates = chain_updates(attempts, states, self.params)
        await _store_states(conn, touched)
        return [mastery_updated(u, topic=self._mastery_topic) for u in updates if u.steps]


async def _load_states(
    conn: asyncpg.Connection, attempts: Sequence[Attempt]
) -> dict[MasteryKey, MasteryState]:
    keys = sorted(
        {MasteryKey(a.tenant_id, a.user_id, skill) for a in attempts for skill in a.skill_ids}
    )
    rows = await conn.fetch(
        _LOAD_ROWS,
        [k.tenant_id for k in keys],
        [k.user_id for k in keys],
        [k.skill_id for k in keys],
    )
    return {
        MasteryKey(row["tenant_id"], row["user_id"], row["skill_id"]): MasteryState(
            p_mastery=row["p_mastery"],
            attempts=row["attempts"],
            correct=row["correct"],
            last_event_id=str(row["last_event_id"]),
            last_attempt_at=row["last_attempt_at"],
        )
        for row in rows
    }


async def _store_states(
    conn: asyncpg.Connection, touched: Mapping[MasteryKey, MasteryState]
) -> None:
    if not touched:
        return
    keys = sorted(touched)
    states = [touched[k] for k in keys]
    await conn.execute(
        _UPSERT_ROWS,
        [k.tenant_id for k in keys],
        [k.user_id for k in keys],
        [k.skill_id for k in keys],
        [s.p_mastery for s in states],
        [s.attempts for s in states],
        [s.correct for s in states],
        [s.last_event_id for s in states],
        [s.last_attempt_at for s in states],
    )
