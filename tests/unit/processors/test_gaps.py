"""The pure parts of the gaps processor: decoding, the batch replay, GapDetected records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from learnstream.events.v1 import derived_pb2, envelope_pb2
from learnstream.kafka import learner_key
from processors.events import LearnerKey, MasteryChange, SkillEvidence, decode_mastery_updated
from processors.exceptions import PoisonEvent
from processors.gaps import chain_gaps, gap_detected
from processors.offsets import SourceRecord, derived_event_id
from scheduler.gaps import ConceptGraph, GapState

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
LEARNER = LearnerKey("t", "u")


def record(*skills: tuple[str, float, int], key: bytes | None = None) -> SourceRecord:
    envelope = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), tenant_id="t", user_id="u")
    envelope.occurred_at.FromDatetime(T0)
    message = derived_pb2.MasteryUpdated(envelope=envelope, model="bkt")
    for skill_id, p, attempts in skills:
        message.skills.add(skill_id=skill_id, p_mastery=p, attempts=attempts)
    return SourceRecord(
        "m", 0, 0, learner_key("t", "u") if key is None else key, message.SerializeToString()
    )


def change(n: int, *skills: tuple[str, float, int]) -> MasteryChange:
    return MasteryChange(
        event_id=str(uuid.UUID(int=n + 1)),
        tenant_id="t",
        user_id="u",
        session_id="",
        occurred_at=T0 + timedelta(minutes=n),
        skills=tuple(SkillEvidence(*s) for s in skills),
    )


def test_decode_keeps_every_skill_and_refuses_broken_events() -> None:
    decoded = decode_mastery_updated(record(("a", 0.3, 2), ("b", 0.9, 5)))
    assert [(s.skill_id, s.p_mastery, s.attempts) for s in decoded.skills] == [
        ("a", 0.3, 2),
        ("b", 0.9, 5),
    ]
    with pytest.raises(PoisonEvent, match="outside"):
        decode_mastery_updated(record(("a", 1.5, 1)))
    with pytest.raises(PoisonEvent, match="attempts"):
        decode_mastery_updated(record(("a", 0.5, 0)))
    with pytest.raises(PoisonEvent, match="key"):
        decode_mastery_updated(record(("a", 0.5, 1), key=b"t:other"))
    with pytest.raises(PoisonEvent, match="protobuf"):
        decode_mastery_updated(SourceRecord("m", 0, 0, b"t:u", b"\xff\xff"))


def test_replay_opens_a_gap_announces_it_once_and_ignores_stale_estimates() -> None:
    changes = [
        change(0, ("a", 0.2, 1)),
        change(1, ("a", 0.1, 2)),
        change(2, ("a", 0.05, 3)),
        change(3, ("a", 0.04, 4)),
        change(4, ("a", 0.9, 2)),  # older than what is stored: must not move backwards
    ]
    rows, announced = chain_gaps(changes, {}, {})
    row = rows[LEARNER]["a"]
    assert row.status is GapState.OPEN
    assert row.attempts == 4
    assert row.p_mastery == 0.04
    assert row.opened_at == changes[2].occurred_at
    assert [(a.change.event_id, a.row.status) for a in announced] == [
        (changes[0].event_id, GapState.INSUFFICIENT_DATA),
        (changes[2].event_id, GapState.OPEN),
    ]


def test_open_gaps_are_reassessed_when_their_dependents_progress() -> None:
    graph = ConceptGraph({"b": ["a"], "c": ["b"]})
    opened = [change(n, ("a", 0.05, n + 1)) for n in range(3)]
    rows, _ = chain_gaps(opened, {}, {"t": graph})
    before = rows[LEARNER]["a"]
    assert before.blocked_skills == 2  # b and c: no evidence yet
    rows, announced = chain_gaps([change(5, ("b", 0.99, 9))], rows, {"t": graph})
    after = rows[LEARNER]["a"]
    assert after.blocked_skills == 1  # b is mastered now
    assert after.status is GapState.OPEN
    assert after.severity < before.severity  # fewer blocked, and older evidence
    assert [a.skill_id for a in announced] == []  # b went straight to clear: not announced


def test_gap_detected_record_is_deterministic_and_keyed_by_learner() -> None:
    _, announced = chain_gaps([change(n, ("a", 0.05, n + 1)) for n in range(3)], {}, {})
    opened = announced[-1]
    first = gap_detected(opened, topic="gaps")
    assert first == gap_detected(opened, topic="gaps")
    assert first.key == learner_key("t", "u")
    message = derived_pb2.GapDetected.FromString(first.value)
    assert message.status == derived_pb2.GAP_STATUS_OPEN
    assert message.envelope.event_id == derived_event_id(opened.change.event_id, "gap_detected:a")
    assert message.skill_id == "a"
    assert message.p_mastery == opened.row.p_mastery
