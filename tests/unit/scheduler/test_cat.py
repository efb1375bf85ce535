"""CAT placement: selection, exposure control, content balancing, stopping, state, catsim."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from bench.scheduler_irt import compare_with_catsim
from scheduler import cat, irt


@pytest.fixture
def bank() -> cat.CatBank:
    rng = np.random.default_rng(21)
    n = 120
    items = irt.ItemBank(rng.uniform(0.7, 2.0, n), rng.normal(0, 1.2, n), rng.uniform(0, 0.2, n))
    skills = tuple(("algebra", "fractions", "geometry")[i % 3] for i in range(n))
    return cat.CatBank(items, skills)


def _answer_all(
    state: cat.CatState, bank: cat.CatBank, ability: float, rng: np.random.Generator
) -> cat.CatState:
    p = irt.bank_p_correct(bank.items, ability)
    while (item := cat.next_item(state, bank, rng)) is not None:
        state = cat.record_answer(state, item, bool(rng.random() < p[item]))
    return state


def test_first_item_is_the_most_informative_at_the_prior_mean(bank: cat.CatBank) -> None:
    state = cat.start(cat.CatConfig(randomesque_k=1, prior_mean=0.7))
    expected = int(np.argmax(irt.bank_information(bank.items, 0.7)))
    assert cat.next_item(state, bank, np.random.default_rng(0)) == expected


def test_later_items_maximise_information_at_the_eap_ability(bank: cat.CatBank) -> None:
    state = cat.start(cat.CatConfig(randomesque_k=1))
    for item, correct in ((3, True), (40, True), (77, False)):
        state = cat.record_answer(state, item, correct)
    eap = irt.estimate_eap(bank.items, [3, 40, 77], [1, 1, 0])
    info = irt.bank_information(bank.items, eap.ability)
    info[[3, 40, 77]] = -1
    assert cat.next_item(state, bank, np.random.default_rng(0)) == int(np.argmax(info))


def test_randomesque_picks_spread_over_the_k_most_informative(bank: cat.CatBank) -> None:
    state = cat.start(cat.CatConfig(randomesque_k=4))
    top4 = set(np.argsort(-irt.bank_information(bank.items, 0.0))[:4].tolist())
    picks = Counter(cat.next_item(state, bank, np.random.default_rng(seed)) for seed in range(200))
    assert set(picks) == top4
    assert min(picks.values()) > 20  # uniform would give 50 each


def test_content_balancing_follows_target_shares(bank: cat.CatBank) -> None:
    config = cat.CatConfig.with_targets(
        {"algebra": 2, "fractions": 1, "geometry": 1}, se_target=0.01, min_items=20, max_items=20
    )
    state = _answer_all(cat.start(config), bank, 0.3, np.random.default_rng(5))
    given = Counter(bank.item_skills[i] for i in state.items)
    assert given == {"algebra": 10, "fractions": 5, "geometry": 5}
    # At every prefix no skill is more than one item away from its share.
    for n in range(1, 21):
        so_far = Counter(bank.item_skills[i] for i in state.items[:n])
        for skill, share in config.skill_targets:
            assert abs(so_far[skill] - share * n) <= 1


def test_skills_without_a_target_share_are_never_given(bank: cat.CatBank) -> None:
    config = cat.CatConfig.with_targets({"algebra": 1, "geometry": 1}, max_items=12)
    state = _answer_all(cat.start(config), bank, -0.5, np.random.default_rng(6))
    assert {bank.item_skills[i] for i in state.items} <= {"algebra", "geometry"}


def test_stops_at_max_items(bank: cat.CatBank) -> None:
    config = cat.CatConfig(se_target=0.01, min_items=0, max_items=7)
    state = _answer_all(cat.start(config), bank, 1.0, np.random.default_rng(7))
    assert len(state.items) == 7
    assert cat.result(state, bank).stop_reason is cat.StopReason.MAX_ITEMS


def test_stops_once_the_se_target_is_met_but_not_before_min_items(bank: cat.CatBank) -> None:
    # A prior SD of 1 already meets a target of 1.5; min_items still forces 4 answers.
    config = cat.CatConfig(se_target=1.5, min_items=4, max_items=30)
    state = _answer_all(cat.start(config), bank, 0.0, np.random.default_rng(8))
    assert len(state.items) == 4
    assert cat.result(state, bank).stop_reason is cat.StopReason.SE_REACHED
    # With a usual target the test ends as soon as the posterior SD reaches it.
    config = cat.CatConfig(se_target=0.35, min_items=1, max_items=60, randomesque_k=1)
    state = _answer_all(cat.start(config), bank, 0.0, np.random.default_rng(8))
    assert cat.result(state, bank).ability_se <= 0.35
    shorter = cat.CatState(config, state.items[:-1], state.responses[:-1])
    assert cat.result(shorter, bank).ability_se > 0.35


def test_stops_when_the_bank_is_exhausted() -> None:
    small = cat.CatBank(irt.ItemBank.rasch([-1.0, 0.0, 1.0]), ("x", "x", "y"))
    config = cat.CatConfig(se_target=0.01, min_items=0, max_items=10)
    state = _answer_all(cat.start(config), small, 0.0, np.random.default_rng(9))
    assert sorted(state.items) == [0, 1, 2]
    assert cat.result(state, small).stop_reason is cat.StopReason.BANK_EXHAUSTED
    assert cat.next_item(state, small, np.random.default_rng(0)) is None


def test_record_answer_refuses_repeats_and_negative_items() -> None:
    state = cat.record_answer(cat.start(), 4, True)
    with pytest.raises(cat.PlacementError, match="already given"):
        cat.record_answer(state, 4, False)
    with pytest.raises(cat.PlacementError, match=">= 0"):
        cat.record_answer(state, -1, False)


def test_an_item_outside_the_bank_is_refused_by_the_bank_aware_steps(bank: cat.CatBank) -> None:
    state = cat.record_answer(cat.start(), bank.n_items + 3, True)
    with pytest.raises(cat.PlacementError, match="not in a bank"):
        cat.next_item(state, bank, np.random.default_rng(0))
    with pytest.raises(cat.PlacementError, match="not in a bank"):
        cat.result(state, bank)


def test_state_round_trips_through_json(bank: cat.CatBank) -> None:
    config = cat.CatConfig.with_targets({"algebra": 3, "geometry": 1}, max_items=9, prior_sd=1.2)
    state = _answer_all(cat.start(config), bank, 0.4, np.random.default_rng(10))
    again = cat.CatState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert again.config.skill_targets == (("algebra", 0.75), ("geometry", 0.25))


@pytest.mark.parametrize(
    "raw",
    [
        {"items": [1, 1], "responses": [True, False]},
        {"items": [1], "responses": []},
        {"config": {"max_items": 0}},
        {"config": {"se_target": -1}},
        {"config": {"skill_targets": {"a": -1}}},
        {"items": ["x"], "responses": [True]},
        {"items": [-2], "responses": [True]},
    ],
)
def test_a_stored_state_that_does_not_parse_raises_placement_error(raw: dict[str, object]) -> None:
    with pytest.raises(cat.PlacementError):
        cat.CatState.from_dict(raw)


def test_result_matches_eap_and_gives_mastery_per_skill(bank: cat.CatBank) -> None:
    state = cat.start(cat.CatConfig())
    for item, correct in ((0, True), (1, False), (2, True), (9, True)):
        state = cat.record_answer(state, item, correct)
    placed = cat.result(state, bank)
    eap = irt.estimate_eap(bank.items, [0, 1, 2, 9], [1, 0, 1, 1])
    assert placed.ability == pytest.approx(eap.ability)
    assert placed.ability_se == pytest.approx(eap.ability_se)
    assert placed.stop_reason is None  # 4 < min_items: still in progress
    assert set(placed.skill_mastery) == set(bank.skills)
    assert all(0 <= p <= 1 for p in placed.skill_mastery.values())
    assert json.loads(json.dumps(placed.to_dict()))["items"] == [0, 1, 2, 9]


def test_skill_mastery_rises_with_ability_and_falls_with_skill_difficulty() -> None:
    items = irt.ItemBank.two_pl([1.0] * 6, [-2.0, -1.5, -1.0, 1.0, 1.5, 2.0])
    bank = cat.CatBank(items, ("easy",) * 3 + ("hard",) * 3)
    strong = cat.record_answer(cat.record_answer(cat.start(), 3, True), 4, True)
    weak = cat.record_answer(cat.record_answer(cat.start(), 0, False), 1, False)
    strong_mastery = cat.result(strong, bank).skill_mastery
    weak_mastery = cat.result(weak, bank).skill_mastery
    for skill in ("easy", "hard"):
        assert strong_mastery[skill] > weak_mastery[skill]
    assert strong_mastery["easy"] > strong_mastery["hard"]
    # The posterior-predictive value lies between plug-in mastery and 1/2 (it is shrunk).
    plug_in = cat.placement_mastery(cat.result(strong, bank).ability, bank)
    assert 0.5 < strong_mastery["easy"] < plug_in["easy"]


def test_adaptive_placement_recovers_simulated_abilities(bank: cat.CatBank) -> None:
    rng = np.random.default_rng(30)
    abilities = rng.normal(size=60)
    config = cat.CatConfig(se_target=0.35, min_items=5, max_items=40)
    estimates = []
    for ability in abilities:
        answers = rng.random(bank.n_items) < irt.bank_p_correct(bank.items, ability)
        estimates.append(cat.administer(bank, config, answers, rng).ability)
    error = np.asarray(estimates) - abilities
    assert np.sqrt(np.mean(error**2)) < 0.5
    assert np.corrcoef(abilities, estimates)[0, 1] > 0.9


def test_needs_no_more_items_than_catsim_at_comparable_error() -> None:
    # Same bank, examinees and pre-drawn answers for both; see bench/scheduler_irt.py.
    ours, theirs = compare_with_catsim(100, n_items=300, se_target=0.3, max_items=60, seed=77)
    assert ours.mean_items <= theirs.mean_items
    assert ours.rmse <= theirs.rmse + 0.05


def test_sessions_with_many_distinct_priors_give_the_same_answers(bank: cat.CatBank) -> None:
    # Beyond the cached priors the posterior is computed directly; both ways must agree.
    answers = ((4, True), (50, False), (99, True))
    for mean in np.linspace(-1, 1, cat.MAX_CACHED_PRIORS + 3):
        state = cat.start(cat.CatConfig(prior_mean=float(mean), prior_sd=0.9))
        for item, correct in answers:
            state = cat.record_answer(state, item, correct)
        expected = irt.estimate_eap(
            bank.items, [4, 50, 99], [1, 0, 1], irt.NormalPrior(float(mean), 0.9)
        )
        assert cat.result(state, bank).ability == pytest.approx(expected.ability, abs=1e-12)
    assert len(bank._grid_tables) == cat.MAX_CACHED_PRIORS
