"""What a code submission amounts to: status, score, and the attempt it becomes.

Python submissions add their construct skills to the exercise's; other languages
keep the test signal only; an unparsable one is recorded but becomes no attempt;
no tests, no signal. The derived attempt is a pure function of the submission
(deterministic event_id), and decoding refuses what no retry can fix.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from learnstream.events.v1 import attempt_pb2, code_submission_pb2, envelope_pb2
from learnstream.kafka import learner_key
from processors.code_submissions import (
    Submission,
    assess,
    decode_submission,
    derived_attempt,
)
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, derived_event_id

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
LOOP = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"


def submission(
    source: str = LOOP, *, language: str = "python", passed: int = 3, total: int = 4
) -> Submission:
    return Submission(
        event_id=str(uuid.uuid4()),
        tenant_id="t",
        user_id="u",
        session_id="s1",
        item_id="sum-list",
        item_version=2,
        skill_ids=("lists",),
        language=language,
        source=source,
        tests_passed=passed,
        tests_total=total,
        runtime_ms=40,
        occurred_at=T0,
        received_at=None,
    )


def test_python_adds_construct_skills_and_the_test_score() -> None:
    assessment = assess(submission())
    assert assessment.status == "analyzed"
    assert assessment.score == 0.75
    assert assessment.construct_skills == ("python.functions", "python.loops")
    assert assessment.attempt_skills == ("lists", "python.functions", "python.loops")


def test_other_languages_keep_the_test_signal_only() -> None:
    assessment = assess(submission("function f() { return 1 }", language="javascript"))
    assert (assessment.status, assessment.metrics, assessment.attempt_skills) == (
        "tests_only",
        None,
        ("lists",),
    )


def test_unparsable_python_is_recorded_but_changes_no_mastery() -> None:
    broken = submission("def total(xs)\n    return sum(xs)\n", passed=4, total=4)
    assessment = assess(broken)
    assert assessment.status == "unparsable"
    assert assessment.reason is not None
    assert "SyntaxError" in assessment.reason
    assert assessment.score == 1.0  # kept in the view ...
    assert derived_attempt(broken, assessment, topic="a") is None  # ... but no attempt


def test_no_tests_no_signal() -> None:
    empty = submission(passed=0, total=0)
    assessment = assess(empty)
    assert (assessment.status, assessment.score) == ("no_tests", None)
    assert derived_attempt(empty, assessment, topic="a") is None


def test_the_derived_attempt_is_deterministic_and_complete() -> None:
    item = submission(passed=4, total=4)
    record = derived_attempt(item, assess(item), topic="ns.attempts.v1")
    assert record is not None
    assert record == derived_attempt(item, assess(item), topic="ns.attempts.v1")
    event = attempt_pb2.AttemptEvent.FromString(record.value)
    assert record.key == learner_key("t", "u")
    assert event.envelope.event_id == derived_event_id(item.event_id, "code_attempt")
    assert (event.item_id, event.correct, event.score) == ("sum-list", True, 1.0)
    assert list(event.skill_ids) == ["lists", "python.functions", "python.loops"]
    assert event.envelope.occurred_at.ToDatetime(tzinfo=UTC) == T0


def encoded(passed: int = 1, total: int = 2, key: bytes | None = None) -> SourceRecord:
    envelope = envelope_pb2.Envelope(event_id=str(uuid.uuid4()), tenant_id="t", user_id="u")
    envelope.occurred_at.FromDatetime(T0)
    event = code_submission_pb2.CodeSubmissionEvent(
        envelope=envelope,
        item_id="ex",
        skill_ids=["a", "a", "b"],
        language=" Python ",
        source="x = 1",
        tests_passed=passed,
        tests_total=total,
    )
    return SourceRecord("c", 0, 0, key or learner_key("t", "u"), event.SerializeToString())


def test_decode_normalises_language_and_skills() -> None:
    decoded = decode_submission(encoded())
    assert (decoded.language, decoded.skill_ids) == ("python", ("a", "b"))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (encoded(passed=3, total=2), "tests_passed"),
        (encoded(key=b"t:other"), "record key"),
        (SourceRecord("c", 0, 0, b"t:u", b"\xff garbage"), "not a valid CodeSubmissionEvent"),
    ],
)
def test_decode_refuses_poison(record: SourceRecord, reason: str) -> None:
    with pytest.raises(PoisonEvent, match=reason):
        decode_submission(record)
