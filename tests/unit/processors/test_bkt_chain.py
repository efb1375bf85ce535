"""learner_state's BKT chain over a batch, and the MasteryUpdated records of its steps."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from learnstream.events.v1 import derived_pb2, envelope_pb2
from learnstream.kafka import learner_key
from learnstream.views.mastery import MasteryKey, MasteryState
from processors.bkt_chain import chain_updates, clamp_probability
from processors.events import Attempt, mastery_updated
from processors.offsets import derived_event_id
from scheduler.bkt import DEFAULT_PARAMS, BKTParams, update

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def attempt(user: str, skills: tuple[str, ...], correct: bool, n: int = 0) -> Attempt:
    return Attempt(
        event_id=str(uuid.uuid4()),
        tenant_id="t",
        user_id=user,
        session_id="s",
        skill_ids=skills,
        correct=correct,
        score=1.0 if correct else 0.0,
        occurred_at=T0 + timedelta(seconds=n),
    )


def test_consecutive_attempts_of_one_learner_chain_within_a_batch() -> None:
    answers = [True, False, True, True, False, True]
    attempts = [attempt("u", ("s1",), correct, n) for n, correct in enumerate(answers)]
    touched, updates = chain_updates(attempts, {})
    p = DEFAULT_PARAMS.prior
    for item, correct in zip(updates, answers, strict=True):
        (step,) = item.steps
        assert step.p_mastery_before == p
        p = clamp_probability(update(p, float(correct), DEFAULT_PARAMS))
        assert step.p_mastery == p
    state = touched[MasteryKey("t", "u", "s1")]
    assert (state.p_mastery, state.attempts, state.correct) == (p, 6, 4)
    assert (state.last_event_id, state.last_attempt_at) == (
        attempts[-1].event_id,
        attempts[-1].occurred_at,
    )


def test_one_batch_and_many_small_batches_give_the_same_state() -> None:
    attempts = [attempt(f"u{n % 3}", (f"s{n % 4}", f"s{n % 5}"), n % 3 != 0, n) for n in range(40)]
    whole, _ = chain_updates(attempts, {})
    carried: dict[MasteryKey, MasteryState] = {}
    for start in range(0, len(attempts), 7):
        touched, _ = chain_updates(attempts[start : start + 7], carried)
        carried = {**carried, **touched}
    assert carried == whole


def test_stored_state_is_the_starting_point_and_learners_stay_apart() -> None:
    key = MasteryKey("t", "u", "s1")
    stored = {key: MasteryState(0.9, 10, 8, str(uuid.uuid4()), T0)}
    touched, updates = chain_updates(
        [attempt("u", ("s1",), False), attempt("v", ("s1",), True)], stored
    )
    assert updates[0].steps[0].p_mastery_before == 0.9
    assert touched[key].attempts == 11
    assert touched[key].p_mastery == update(0.9, 0.0, DEFAULT_PARAMS)
    assert touched[MasteryKey("t", "v", "s1")].p_mastery == update(
        DEFAULT_PARAMS.prior, 1.0, DEFAULT_PARAMS
    )


def test_an_attempt_repeated_right_after_itself_changes_nothing() -> None:
    first = attempt("u", ("s1",), True)
    touched, updates = chain_updates([first, first], {})
    assert touched[MasteryKey("t", "u", "s1")].attempts == 1
    assert updates[1].steps == ()


def test_custom_parameters_are_used() -> None:
    params = BKTParams(prior=0.5, learn=0.3, guess=0.1, slip=0.05)
    _, updates = chain_updates([attempt("u", ("s1",), True)], {}, params)
    step = updates[0].steps[0]
    assert (step.p_mastery_before, step.p_mastery) == (0.5, update(0.5, 1.0, params))


def test_mastery_stays_a_probability_after_a_long_run_of_correct_answers() -> None:
    attempts = [attempt("u", ("s1",), True, n) for n in range(200)]
    _, updates = chain_updates(attempts, {})
    assert all(0.0 <= u.steps[0].p_mastery <= 1.0 for u in updates)


def test_mastery_updated_is_deterministic_and_keyed_by_learner() -> None:
    item = attempt("u", ("s1", "s2"), True)
    _, (updated,) = chain_updates([item], {})
    record = mastery_updated(updated, topic="ns.mastery.v1")
    assert record == mastery_updated(updated, topic="ns.mastery.v1")
    assert (record.topic, record.key) == ("ns.mastery.v1", learner_key("t", "u"))
    event = derived_pb2.MasteryUpdated.FromString(record.value)
    assert event.envelope.event_id == derived_event_id(item.event_id, "mastery_updated")
    assert event.cause_event_id == item.event_id
    assert event.envelope.occurred_at.ToDatetime(tzinfo=UTC) == item.occurred_at
    assert [s.skill_id for s in event.skills] == ["s1", "s2"]
    assert event.skills[0].p_correct_predicted == pytest.approx(
        DEFAULT_PARAMS.prior * (1 - DEFAULT_PARAMS.slip)
        + (1 - DEFAULT_PARAMS.prior) * DEFAULT_PARAMS.guess
    )


@pytest.mark.parametrize(
    "occurred_at",
    [
        T0,
        datetime(2024, 3, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 58, 250_000, tzinfo=UTC),
        datetime(2024, 4, 1, 2, 30, 0, 1, tzinfo=UTC),
    ],
)
def test_mastery_updated_time_is_what_timestamp_from_datetime_gives(occurred_at: datetime) -> None:
    item = dataclasses.replace(attempt("u", ("s",), True), occurred_at=occurred_at)
    _, (updated,) = chain_updates([item], {})
    event = derived_pb2.MasteryUpdated.FromString(mastery_updated(updated, topic="m").value)
    expected = envelope_pb2.Envelope()
    expected.occurred_at.FromDatetime(occurred_at)
    assert event.envelope.occurred_at == expected.occurred_at
    assert event.envelope.source.app == "learnstream-processors"
