"""The events processors share: decoded types, their decoders, and the MasteryUpdated encoder.

Every processor reads its input through here, so a topic's records are validated the
same way whoever consumes them, and a processor never imports another to reuse its
decoder. Decoders raise :class:`~processors.exceptions.PoisonEvent` saying what is
wrong; :mod:`processors.base` dead-letters such records. The envelope checks common
to every learner stream (a UUID event_id, tenant and user ids, the record key
``tenant:user``, occurred_at) are :func:`processors.offsets.decode_learner_event`'s.

* AttemptEvent (``Stream.ATTEMPTS``): :func:`decode_attempt` -> :class:`Attempt`.
* SessionEvent (``Stream.SESSIONS``): :func:`decode_session` -> :class:`SessionSighting`.
* MasteryUpdated (``Stream.MASTERY``): written by learner_state with
  :func:`mastery_updated`, read back with :func:`decode_mastery_updated` (the new
  mastery per skill, :class:`MasteryChange`) or :func:`decode_mastery_step` (with each
  skill's p_mastery before the answer, :class:`MasteryStep`); each parses the record once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from google.protobuf import timestamp_pb2

from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2, session_pb2
from learnstream.kafka import OutgoingRecord, learner_key
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, decode_learner_event, derived_event_id

# MasteryUpdated.model of the BKT estimates learner_state publishes.
MASTERY_MODEL = "bkt"
# The kind in a MasteryUpdated's derived event_id (processors.offsets.derived_event_id).
MASTERY_UPDATED_KIND = "mastery_updated"
PROCESSORS_SOURCE = envelope_pb2.Source(app="learnstream-processors", platform="server")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LearnerKey(NamedTuple):
    """One learner: every learner stream is keyed ``tenant_id:user_id``."""

    tenant_id: str
    user_id: str


# --- attempts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """An AttemptEvent, validated."""

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

    @property
    def learner(self) -> LearnerKey:
        return LearnerKey(self.tenant_id, self.user_id)


def decode_attempt(record: SourceRecord) -> Attempt:
    """Parse and validate an AttemptEvent record; PoisonEvent says what is wrong.

    Checked beyond the envelope: at least one skill, score in [0, 1] when given,
    response_time_ms and hint_count not negative.
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


# --- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionSighting:
    """A SessionEvent: which learner was seen in which session, on which device."""

    event_id: str
    tenant_id: str
    user_id: str
    session_id: str
    device_id: str  # empty when the client did not send one
    occurred_at: datetime  # UTC


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


# --- MasteryUpdated ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkillStep:
    """One skill's BKT step caused by one attempt (a MasteryUpdated's SkillMastery)."""

    skill_id: str
    p_mastery_before: float  # in [0, 1]
    p_mastery: float  # in [0, 1]
    p_correct_predicted: float  # in [0, 1], before the answer
    attempts: int  # on this skill, this attempt included


@dataclass(frozen=True, slots=True)
class AttemptUpdate:
    """The steps one attempt caused; empty when it was a repeat of the last attempt applied."""

    attempt: Attempt
    steps: tuple[SkillStep, ...]


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
        event_id=derived_event_id(attempt.event_id, MASTERY_UPDATED_KIND),
        tenant_id=attempt.tenant_id,
        user_id=attempt.user_id,
        session_id=attempt.session_id,
        source=PROCESSORS_SOURCE,
        occurred_at=timestamp_pb2.Timestamp(
            seconds=since_epoch.days * 86_400 + since_epoch.seconds,
            nanos=since_epoch.microseconds * 1_000,
        ),
    )
    message = derived_pb2.MasteryUpdated(
        envelope=envelope,
        cause_event_id=attempt.event_id,
        model=MASTERY_MODEL,
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


@dataclass(frozen=True, slots=True)
class SkillEvidence:
    """One skill's mastery as a MasteryUpdated reports it."""

    skill_id: str
    p_mastery: float  # in [0, 1]
    attempts: int  # answers on the skill so far, >= 1


@dataclass(frozen=True, slots=True)
class MasteryChange:
    """A MasteryUpdated, validated: the learner's new mastery of each skill it carries."""

    event_id: str  # the MasteryUpdated's own (deterministic) event_id
    tenant_id: str
    user_id: str
    session_id: str
    occurred_at: datetime  # UTC, the attempt's event time
    skills: tuple[SkillEvidence, ...]

    @property
    def learner(self) -> LearnerKey:
        return LearnerKey(self.tenant_id, self.user_id)


@dataclass(frozen=True, slots=True)
class MasteryStep:
    """A validated MasteryUpdated with each skill's p_mastery before the answer."""

    change: MasteryChange
    before: Mapping[str, float]  # skill -> p_mastery before, in [0, 1]

    @property
    def learner(self) -> LearnerKey:
        return self.change.learner


def _mastery_change(event: derived_pb2.MasteryUpdated, event_id: str) -> MasteryChange:
    envelope = event.envelope
    skills: dict[str, SkillEvidence] = {}
    for skill in event.skills:
        if not skill.skill_id:
            raise PoisonEvent(f"event {event_id}: a skill without skill_id")
        if not 0.0 <= skill.p_mastery <= 1.0:  # also false for NaN
            raise PoisonEvent(f"event {event_id}: p_mastery {skill.p_mastery} is outside [0, 1]")
        if skill.attempts < 1:
            raise PoisonEvent(f"event {event_id}: skill {skill.skill_id} has attempts < 1")
        skills[skill.skill_id] = SkillEvidence(skill.skill_id, skill.p_mastery, skill.attempts)
    return MasteryChange(
        event_id=event_id,
        tenant_id=envelope.tenant_id,
        user_id=envelope.user_id,
        session_id=envelope.session_id,
        occurred_at=envelope.occurred_at.ToDatetime(tzinfo=UTC),
        skills=tuple(skills.values()),
    )


def decode_mastery_updated(record: SourceRecord) -> MasteryChange:
    """Parse and validate a MasteryUpdated record; PoisonEvent says what is wrong.

    Checked beyond the envelope: every skill has an id, p_mastery in [0, 1] and
    attempts >= 1. A skill listed twice keeps its last entry.
    """
    event, event_id = decode_learner_event(record, derived_pb2.MasteryUpdated)
    return _mastery_change(event, event_id)


def decode_mastery_step(record: SourceRecord) -> MasteryStep:
    """:func:`decode_mastery_updated` plus each skill's p_mastery_before, checked in [0, 1]."""
    event, event_id = decode_learner_event(record, derived_pb2.MasteryUpdated)
    change = _mastery_change(event, event_id)
    before: dict[str, float] = {}
    for skill in event.skills:
        if not 0.0 <= skill.p_mastery_before <= 1.0:
            raise PoisonEvent(
                f"event {event_id}: p_mastery_before {skill.p_mastery_before} is outside [0, 1]"
            )
        before[skill.skill_id] = skill.p_mastery_before
    return MasteryStep(change, before)
