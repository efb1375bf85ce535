"""Pure batch scoring of fraud (scheduler.fraud_batch): collusion, replays, devices, batching."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler.fraud import FraudSignalKind, ResponseReference, empty_histogram
from scheduler.fraud_batch import (
    ATTEMPT,
    SESSION,
    AnswerKey,
    AttemptInputs,
    AttemptOutcome,
    DeviceSessionKey,
    LearnerHistory,
    ReferenceKey,
    SightingInputs,
    SubjectKey,
    score_attempts,
    score_sightings,
)

T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
# An item with 20 wrong answers so far, none of them "b": sharing "b" is uncommon.
ITEM_REFERENCE = ResponseReference(empty_histogram(), answers=30, correct=10)


@dataclass(frozen=True, slots=True)
class Answer:
    """A ScoredAnswer for tests."""

    event_id: str
    user_id: str
    occurred_at: datetime
    correct: bool = False
    response: str | None = "b"
    session_id: str = "lab"
    tenant_id: str = "t"
    item_id: str = "i1"
    skill_ids: tuple[str, ...] = ("s",)
    response_time_ms: int = 20_000

    @property
    def score(self) -> float:
        return float(self.correct)


@dataclass(frozen=True, slots=True)
class Seen:
    """A Sighting for tests."""

    event_id: str
    user_id: str
    session_id: str
    occurred_at: datetime
    device_id: str = "d1"
    tenant_id: str = "t"


def inputs(**overrides: object) -> AttemptInputs:
    fields: dict[str, object] = {
        "histories": {},
        "references": {ReferenceKey("t", "item", "i1"): ITEM_REFERENCE},
        "wrong_counts": {},
        "groups": {},
        "item_params": {},
    }
    fields.update(overrides)
    return AttemptInputs(**fields)  # type: ignore[arg-type]


def scores(outcome: AttemptOutcome) -> list[tuple[str, str, float, str]]:
    return [
        (s.subject.subject_id, s.row.user_id, s.row.score, s.cause_event_id) for s in outcome.scored
    ]


def test_a_shared_uncommon_wrong_answer_scores_both_learners_partner_first() -> None:
    a = Answer("e1", "u1", T0)
    b = Answer("e2", "u2", T0 + timedelta(minutes=2))
    outcome = score_attempts([a, b], inputs())
    # e1 alone matched nobody; e2 matched e1: e1 is re-scored (caused by e2), then e2.
    assert scores(outcome) == [("e1", "u1", 0.5, "e2"), ("e2", "u2", 0.5, "e2")]
    for subject in (SubjectKey("t", ATTEMPT, "e1"), SubjectKey("t", ATTEMPT, "e2")):
        (evidence,) = outcome.signals[subject].evidence
        assert evidence.signal is FraudSignalKind.COLLUSION
    assert outcome.new_partners == {
        (SubjectKey("t", ATTEMPT, "e1"), "u2"),
        (SubjectKey("t", ATTEMPT, "e2"), "u1"),
    }
    assert outcome.wrong_counts == {AnswerKey("t", "i1", "b"): 2}
    assert [answer.event_id for _, answer in outcome.new_answers] == ["e1", "e2"]
    # Both answers went into the item's and the skill's response-time references.
    assert outcome.references[ReferenceKey("t", "item", "i1")].answers == 32
    assert outcome.references[ReferenceKey("t", "skill", "s")].answers == 2


def test_answers_outside_the_window_or_the_group_do_not_collude() -> None:
    late = Answer("e2", "u2", T0 + timedelta(hours=1))
    elsewhere = Answer("e3", "u3", T0, session_id="other")
    outcome = score_attempts([Answer("e1", "u1", T0), late, elsewhere], inputs())
    assert outcome.scored == []
    assert outcome.new_partners == set()


def test_an_attempt_already_in_the_history_scores_nothing() -> None:
    a = Answer("e1", "u1", T0)
    history = LearnerHistory().push("e1", T0, 0.0, (1.0, 0.0, 0.0), keep=5)
    outcome = score_attempts([a], inputs(histories={("t", "u1"): history}))
    assert outcome.scored == []
    assert outcome.new_answers == []
    assert outcome.histories[("t", "u1")] == history


def test_one_batch_scores_what_the_same_attempts_score_one_batch_at_a_time() -> None:
    answers = [Answer(f"e{n}", f"u{n % 3}", T0 + timedelta(seconds=40 * n)) for n in range(6)]
    whole = score_attempts(answers, inputs())
    state = inputs()
    one_by_one: list[tuple[str, str, float, str]] = []
    stored_answers: list[tuple[AnswerKey, object]] = []
    partners: dict[SubjectKey, frozenset[str]] = {}
    signals = {}
    for answer in answers:
        step = score_attempts([answer], state)
        one_by_one.extend(scores(step))
        stored_answers.extend(step.new_answers)
        for subject, user in step.new_partners:
            partners[subject] = partners.get(subject, frozenset()) | {user}
        signals.update(step.signals)
        state = inputs(
            histories=step.histories,
            references=step.references,
            wrong_counts=step.wrong_counts,
            stored_answers=list(stored_answers),
            partners=dict(partners),
            signals=dict(signals),
        )
    assert scores(whole) == one_by_one
    assert whole.signals == signals


def test_a_device_over_its_account_limit_rescores_every_nearby_session_once() -> None:
    seen = [Seen(f"v{n}", f"u{n}", f"s{n}", T0 + timedelta(minutes=n)) for n in range(4)]
    outcome = score_sightings(seen, SightingInputs({}, {}))
    # The fourth account crosses the limit of 3: all four sessions are scored, by v3.
    assert [(s.subject.subject_id, s.cause_event_id) for s in outcome.scored] == [
        ("s0", "v3"),
        ("s1", "v3"),
        ("s2", "v3"),
        ("s3", "v3"),
    ]
    assert {s.row.score for s in outcome.scored} == {0.5 + 0.5 / 3}
    assert outcome.device_sessions[DeviceSessionKey("t", "d1", "s0", "u0")] == (T0, T0)
    # Seeing the same session again changes no score, so nothing is announced.
    again = score_sightings(
        [Seen("v4", "u0", "s0", T0 + timedelta(minutes=5))],
        SightingInputs({**outcome.device_sessions}, {k: v for k, v in outcome.signals.items()}),
    )
    assert again.scored == []
    assert again.device_sessions[DeviceSessionKey("t", "d1", "s0", "u0")] == (
        T0,
        T0 + timedelta(minutes=5),
    )
    assert SubjectKey("t", SESSION, "s0") in outcome.signals
