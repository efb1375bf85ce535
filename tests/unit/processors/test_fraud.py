"""The pure parts of the fraud processor: decoding, learner history, signal rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from learnstream.events.v1 import attempt_pb2, envelope_pb2, session_pb2
from learnstream.kafka import learner_key
from learnstream.views.fraud import signal_record
from processors.events import decode_session
from processors.exceptions import PoisonEvent
from processors.fraud import decode_scored_attempt
from processors.offsets import SourceRecord
from scheduler.fraud import FraudEvidence, FraudSignalKind
from scheduler.fraud_batch import LearnerHistory, SignalRow, SubjectKey

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def envelope(session_id: str = "") -> envelope_pb2.Envelope:
    env = envelope_pb2.Envelope(
        event_id=str(uuid.uuid4()), tenant_id="t", user_id="u", session_id=session_id
    )
    env.occurred_at.FromDatetime(T0)
    return env


def test_attempt_decoding_normalizes_the_answer_and_keeps_the_time() -> None:
    event = attempt_pb2.AttemptEvent(
        envelope=envelope(), item_id="i", skill_ids=["s"], response=" X = 7", response_time_ms=900
    )
    decoded = decode_scored_attempt(
        SourceRecord("a", 0, 0, learner_key("t", "u"), event.SerializeToString())
    )
    assert (decoded.item_id, decoded.response, decoded.response_time_ms) == ("i", "x=7", 900)


def test_session_decoding_needs_a_valid_event_and_the_learner_key() -> None:
    event = session_pb2.SessionEvent(envelope=envelope(session_id="s1"), device_id="pc")
    value = event.SerializeToString()
    sighting = decode_session(SourceRecord("s", 0, 0, learner_key("t", "u"), value))
    assert (sighting.session_id, sighting.device_id, sighting.occurred_at) == ("s1", "pc", T0)
    with pytest.raises(PoisonEvent, match="key"):
        decode_session(SourceRecord("s", 0, 0, b"t:x", value))
    with pytest.raises(PoisonEvent, match="protobuf"):
        decode_session(SourceRecord("s", 0, 0, b"t:u", b"\xff\xff"))


def test_history_keeps_the_last_answers_oldest_first() -> None:
    history = LearnerHistory()
    for n in range(5):
        history = history.push(f"e{n}", T0 + timedelta(seconds=n), 1.0, (1.0, 0.1 * n, 0.0), 3)
    assert history.event_ids == ("e2", "e3", "e4")
    assert history.b == pytest.approx((0.2, 0.3, 0.4))


def test_signal_row_replaces_one_signal_and_flags_at_the_threshold() -> None:
    rapid = FraudEvidence(FraudSignalKind.RAPID_RESPONSE, 0.6, "fast")
    row = SignalRow("u", "s", "i", "", T0, (rapid,), "e1")
    first = row.with_evidence(
        FraudEvidence(FraudSignalKind.COLLUSION, 0.5, "one"), FraudSignalKind.COLLUSION
    )
    second = first.with_evidence(
        FraudEvidence(FraudSignalKind.COLLUSION, 0.75, "two"), FraudSignalKind.COLLUSION
    )
    assert [e.signal for e in second.evidence] == [
        FraudSignalKind.COLLUSION,
        FraudSignalKind.RAPID_RESPONSE,
    ]
    assert second.score == pytest.approx(1 - 0.4 * 0.25)
    subject = SubjectKey("t", "attempt", "e1")
    assert signal_record(subject, second, alert_threshold=0.9)["flagged"] is True
    assert signal_record(subject, first, alert_threshold=0.9)["flagged"] is False
    assert signal_record(subject, second, alert_threshold=0.9)["w_collusion"] == 0.75
