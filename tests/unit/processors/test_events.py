"""processors.events: the decoders every processor reads its topics through."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2, session_pb2
from learnstream.kafka import learner_key
from processors.events import (
    LearnerKey,
    SkillEvidence,
    decode_attempt,
    decode_mastery_step,
    decode_mastery_updated,
    decode_session,
)
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def encoded(
    *,
    event_id: str | None = None,
    tenant: str = "t",
    user: str = "u",
    skills: tuple[str, ...] = ("s1",),
    correct: bool = True,
    score: float | None = None,
    occurred: bool = True,
    key: bytes | None = None,
) -> SourceRecord:
    envelope = envelope_pb2.Envelope(
        event_id=event_id or str(uuid.uuid4()), tenant_id=tenant, user_id=user
    )
    if occurred:
        envelope.occurred_at.FromDatetime(T0)
    event = attempt_pb2.AttemptEvent(envelope=envelope, skill_ids=skills, correct=correct)
    if score is not None:
        event.score = score
    record_key = learner_key(tenant, user) if key is None else key
    return SourceRecord("a", 0, 0, record_key, event.SerializeToString())


def test_decode_takes_score_from_correct_when_absent_and_dedupes_skills() -> None:
    decoded = decode_attempt(encoded(skills=("s1", "s2", "s1"), correct=False))
    assert (decoded.score, decoded.skill_ids, decoded.occurred_at) == (0.0, ("s1", "s2"), T0)
    assert decode_attempt(encoded(correct=True)).score == 1.0
    assert decode_attempt(encoded(correct=False, score=0.5)).score == 0.5


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (SourceRecord("a", 0, 0, b"t:u", b"\xff\xfe garbage"), "not a valid AttemptEvent"),
        (SourceRecord("a", 0, 0, b"t:u", None), "no value"),
        (encoded(skills=()), "skill_id"),
        (encoded(skills=("",)), "skill_id"),
        (encoded(event_id="not-a-uuid"), "UUID"),
        (encoded(tenant=""), "tenant_id"),
        (encoded(key=b"t:someone-else"), "record key"),
        (encoded(score=1.5), "is outside"),
        (encoded(score=float("nan")), "is outside"),
        (encoded(occurred=False), "occurred_at"),
    ],
)
def test_decode_rejects_unusable_attempts_as_poison(record: SourceRecord, reason: str) -> None:
    with pytest.raises(PoisonEvent, match=reason):
        decode_attempt(record)


def _envelope(event_id: str, tenant: str = "t", user: str = "u") -> envelope_pb2.Envelope:
    envelope = envelope_pb2.Envelope(
        event_id=event_id, tenant_id=tenant, user_id=user, session_id="sess"
    )
    envelope.occurred_at.FromDatetime(T0)
    return envelope


def test_decode_session_keeps_the_device_and_checks_the_envelope() -> None:
    event_id = str(uuid.uuid4())
    event = session_pb2.SessionEvent(envelope=_envelope(event_id), device_id="dev-1")
    sighting = decode_session(SourceRecord("s", 0, 0, b"t:u", event.SerializeToString()))
    assert (sighting.event_id, sighting.session_id, sighting.device_id) == (
        event_id,
        "sess",
        "dev-1",
    )
    assert (sighting.tenant_id, sighting.user_id, sighting.occurred_at) == ("t", "u", T0)
    with pytest.raises(PoisonEvent, match="record key"):
        decode_session(SourceRecord("s", 0, 0, b"t:other", event.SerializeToString()))


def mastery_record(*skills: tuple[str, float, float, int]) -> SourceRecord:
    event = derived_pb2.MasteryUpdated(
        envelope=_envelope(str(uuid.uuid4())),
        skills=[
            derived_pb2.SkillMastery(
                skill_id=skill, p_mastery_before=before, p_mastery=after, attempts=n
            )
            for skill, before, after, n in skills
        ],
    )
    return SourceRecord("m", 0, 0, learner_key("t", "u"), event.SerializeToString())


def test_a_mastery_step_is_the_mastery_change_plus_the_values_before() -> None:
    record = mastery_record(("s1", 0.2, 0.4, 1), ("s2", 0.5, 0.3, 2))
    change = decode_mastery_updated(record)
    step = decode_mastery_step(record)
    assert step.change == change
    assert step.learner == change.learner == LearnerKey("t", "u")
    assert change.skills == (SkillEvidence("s1", 0.4, 1), SkillEvidence("s2", 0.3, 2))
    assert dict(step.before) == {"s1": 0.2, "s2": 0.5}


@pytest.mark.parametrize(
    ("skills", "reason"),
    [
        ((("", 0.2, 0.4, 1),), "without skill_id"),
        ((("s1", 0.2, 1.4, 1),), r"p_mastery 1\.4"),
        ((("s1", 0.2, 0.4, 0),), "attempts < 1"),
    ],
)
def test_both_mastery_decoders_refuse_a_bad_skill(
    skills: tuple[tuple[str, float, float, int], ...], reason: str
) -> None:
    for decode in (decode_mastery_updated, decode_mastery_step):
        with pytest.raises(PoisonEvent, match=reason):
            decode(mastery_record(*skills))


def test_only_the_step_decoder_checks_the_value_before() -> None:
    record = mastery_record(("s1", 1.5, 0.4, 1))
    assert decode_mastery_updated(record).skills == (SkillEvidence("s1", 0.4, 1),)
    with pytest.raises(PoisonEvent, match=r"p_mastery_before 1\.5"):
        decode_mastery_step(record)
