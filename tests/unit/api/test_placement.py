"""Placement rules: grading, the stored session's round trip, the test's config, the
ability update that seeds learner_ability, and the PlacementEvent's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from api.exceptions import InvalidInputError
from api.services import placement_cat, placement_results
from api.services.placement_cat import BankItem, PlacementSession
from learnstream.settings import Settings
from scheduler import cat, irt

NOW = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
BANK = tuple(
    BankItem(
        f"q{i}", ("algebra", "fractions")[i % 2], 0.8 + 0.1 * (i % 4), -2 + 0.4 * i, 0.1 * (i % 2)
    )
    for i in range(10)
)


def test_grading_ignores_case_spacing_and_compatibility_forms() -> None:
    free = {"prompt": "2+2?", "answer_key": ["Four", "4"]}
    assert placement_cat.grade(free, "  four ")
    assert placement_cat.grade(free, "４")  # fullwidth digit, NFKC-normalised
    assert not placement_cat.grade(free, "five")
    choice = {"prompt": "?", "choices": ["3/4", "2/6"], "answer_key": ["3/4"]}
    assert placement_cat.grade(choice, "3/4")
    assert not placement_cat.grade(choice, "2/6")
    with pytest.raises(InvalidInputError) as refused:
        placement_cat.grade(choice, "1/2")
    assert refused.value.errors[0].field == "body.response"


def session(state: cat.CatState, current: int | None) -> PlacementSession:
    return PlacementSession(
        placement_id="7d1e6f3a-3a4b-4f7e-9c55-0d3c2b1a0f9e",
        tenant_id="acme",
        user_id="0b6f0a4e-8f1c-4f55-a3a1-5d3f1b2c4e6d",
        learner_id="stu-42",
        started_at=NOW,
        bank=BANK,
        state=state,
        current=current,
        seed=123456789,
    )


def test_session_round_trips_through_its_stored_form() -> None:
    config = placement_cat.placement_config(list(BANK), Settings(placement_max_items=6))
    state = cat.record_answer(cat.record_answer(cat.start(config), 3, True), 7, False)
    stored = session(state, 5)
    again = PlacementSession.from_json(stored.to_json().encode())
    assert again == stored
    assert again.cat_bank().item_skills == tuple(i.skill_id for i in BANK)
    with pytest.raises(cat.PlacementError, match="does not parse"):
        PlacementSession.from_json(b'{"placement_id": 1}')


def test_config_balances_skills_and_bounds_length_by_bank_and_settings() -> None:
    config = placement_cat.placement_config(list(BANK), Settings(placement_max_items=30))
    assert config.max_items == len(BANK)
    assert dict(config.skill_targets) == {"algebra": 0.5, "fractions": 0.5}
    short = placement_cat.placement_config(list(BANK[:3]), Settings(placement_max_items=2))
    assert (short.min_items, short.max_items) == (2, 2)
    assert (
        placement_cat.placement_config(list(BANK), Settings(placement_se_target=0.25)).se_target
        == 0.25
    )


def test_picks_repeat_for_the_same_seed_and_step() -> None:
    bank = placement_cat.cat_bank(BANK)
    state = cat.start(placement_cat.placement_config(list(BANK), Settings()))
    picks = {cat.next_item(state, bank, placement_cat.step_rng(99, 0)) for _ in range(5)}
    assert len(picks) == 1


def test_ability_after_answers_equals_the_cat_posterior_for_a_new_learner() -> None:
    config = placement_cat.placement_config(list(BANK), Settings())
    state = cat.start(config)
    answers = [(2, True), (5, False), (8, True)]
    for index, correct in answers:
        state = cat.record_answer(state, index, correct)
    expected = cat.result(state, placement_cat.cat_bank(BANK))
    posterior = placement_cat.ability_after(None, [(BANK[i], c) for i, c in answers])
    estimate = irt.summarize(posterior)
    assert estimate.ability == pytest.approx(expected.ability, abs=1e-12)
    assert estimate.ability_se == pytest.approx(expected.ability_se, abs=1e-12)
    assert posterior.n_responses == 3
    assert np.max(posterior.log_density) == 0.0


def test_ability_after_continues_a_stored_posterior_answer_by_answer() -> None:
    stored = irt.update_posterior(irt.initial_posterior(), 1.2, 0.5, 0.0, 1.0)
    combined = placement_cat.ability_after(stored, [(BANK[4], False)])
    direct = irt.update_posterior(stored, BANK[4].a, BANK[4].b, BANK[4].c, 0.0)
    assert irt.summarize(combined).ability == pytest.approx(irt.summarize(direct).ability)
    assert combined.n_responses == 2


def test_placement_event_carries_the_result_under_the_learner_id() -> None:
    result = placement_results.PlacementResult(
        placement_id="7d1e6f3a-3a4b-4f7e-9c55-0d3c2b1a0f9e",
        user_id="0b6f0a4e-8f1c-4f55-a3a1-5d3f1b2c4e6d",
        learner_id="stu-42",
        ability=0.7,
        ability_se=0.35,
        items_administered=12,
        correct=8,
        stop_reason="se_reached",
        skill_estimates={"fractions": 0.61, "algebra": 0.44},
        seeded_skills=("algebra",),
        started_at=NOW,
        completed_at=NOW,
        event_published=False,
    )
    event = placement_results.placement_event(result, tenant_id="acme")
    assert event.envelope.event_id == event.placement_id == result.placement_id
    assert (event.envelope.tenant_id, event.envelope.user_id) == ("acme", "stu-42")
    assert event.envelope.occurred_at.ToDatetime(tzinfo=UTC) == NOW
    assert (event.ability, event.ability_se, event.items_administered) == (0.7, 0.35, 12)
    assert [(e.skill_id, e.p_mastery) for e in event.skill_estimates] == [
        ("algebra", 0.44),
        ("fractions", 0.61),
    ]
