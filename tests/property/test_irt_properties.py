"""Properties of the IRT model, the EAP posterior and CAT sessions, over generated inputs."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scheduler import cat, irt

# The machine is shared, so no per-example deadline (speed lives in bench/).
SETTINGS = settings(max_examples=150, deadline=None)

abilities = st.floats(-50, 50, allow_nan=False)
slopes = st.floats(0.05, 5.0)
difficulties = st.floats(-6.0, 6.0)
guesses = st.floats(0.0, 0.5)


@st.composite
def item_banks(
    draw: st.DrawFn, min_items: int = 1, max_items: int = 30, guessing: bool = True
) -> irt.ItemBank:
    n = draw(st.integers(min_items, max_items))
    a = draw(hnp.arrays(np.float64, n, elements=slopes))
    b = draw(hnp.arrays(np.float64, n, elements=difficulties))
    c = draw(hnp.arrays(np.float64, n, elements=guesses)) if guessing else np.zeros(n)
    return irt.ItemBank(a, b, c)


@st.composite
def answered(draw: st.DrawFn, guessing: bool = True) -> tuple[irt.ItemBank, np.ndarray, np.ndarray]:
    """A bank and answers to a subset of its items."""
    bank = draw(item_banks(min_items=2, guessing=guessing))
    items = draw(st.lists(st.integers(0, bank.n_items - 1), max_size=bank.n_items - 1, unique=True))
    scores = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(items), max_size=len(items)))
    return bank, np.asarray(items, dtype=np.intp), np.asarray(scores)


priors = st.builds(irt.NormalPrior, mean=st.floats(-2, 2), sd=st.floats(0.3, 2.5))


@SETTINGS
@given(theta=abilities, a=slopes, b=difficulties, c=guesses)
def test_probability_lies_between_the_guessing_floor_and_one(
    theta: float, a: float, b: float, c: float
) -> None:
    p = float(irt.p_correct(theta, a, b, c))
    assert 0.0 <= c <= p <= 1.0


@SETTINGS
@given(bank=item_banks(), theta=hnp.arrays(np.float64, 5, elements=abilities))
def test_information_is_finite_and_non_negative(bank: irt.ItemBank, theta: np.ndarray) -> None:
    info = irt.bank_information(bank, theta)
    assert np.all(np.isfinite(info))
    assert np.all(info >= 0)
    # Never above the 2PL maximum a²/4 of the same slope (guessing only removes information).
    assert np.all(info <= bank.a**2 / 4 + 1e-12)


@SETTINGS
@given(data=answered(), prior=priors)
def test_eap_is_inside_the_grid_with_a_positive_se(
    data: tuple[irt.ItemBank, np.ndarray, np.ndarray], prior: irt.NormalPrior
) -> None:
    bank, items, scores = data
    estimate = irt.estimate_eap(bank, items, scores, prior)
    half = prior.half_width_sd * prior.sd
    assert prior.mean - half <= estimate.ability <= prior.mean + half
    assert 0 < estimate.ability_se <= half


@SETTINGS
@given(data=answered(), prior=priors, next_item=st.integers(0, 29))
def test_an_answer_shrinks_the_posterior_sd_on_average(
    data: tuple[irt.ItemBank, np.ndarray, np.ndarray], prior: irt.NormalPrior, next_item: int
) -> None:
    # Law of total variance: averaged over the answer the model predicts, the posterior
    # variance after one more item is never above the current one.
    bank, items, scores = data
    item = next_item % bank.n_items
    posterior = irt.posterior_for(bank, items, scores, prior)
    now = irt.summarize(posterior)
    p_right = float(
        posterior.weights()
        @ irt.p_correct(posterior.points, bank.a[item], bank.b[item], bank.c[item])
    )
    after = [
        irt.summarize(
            irt.update_posterior(posterior, bank.a[item], bank.b[item], bank.c[item], s)
        ).ability_se
        for s in (0.0, 1.0)
    ]
    expected_variance = (1 - p_right) * after[0] ** 2 + p_right * after[1] ** 2
    assert expected_variance <= now.ability_se**2 * (1 + 1e-9) + 1e-15


@SETTINGS
@given(data=answered(guessing=False), prior=priors)
def test_two_pl_answers_never_widen_the_prior(
    data: tuple[irt.ItemBank, np.ndarray, np.ndarray], prior: irt.NormalPrior
) -> None:
    # A 2PL likelihood is log-concave, so the posterior SD is at most the prior SD
    # whatever the answers (Brascamp–Lieb); 3PL items do not have this property.
    bank, items, scores = data
    estimate = irt.estimate_eap(bank, items, scores, prior)
    prior_se = irt.estimate_eap(bank, [], [], prior).ability_se
    assert estimate.ability_se <= prior_se * (1 + 1e-6)


@st.composite
def cat_cases(draw: st.DrawFn) -> tuple[cat.CatBank, cat.CatConfig, int, float]:
    bank = draw(item_banks(min_items=1, max_items=40))
    skills = tuple(
        draw(st.lists(st.sampled_from("abc"), min_size=bank.n_items, max_size=bank.n_items))
    )
    targets = draw(st.dictionaries(st.sampled_from("abcd"), st.floats(0.1, 3.0), max_size=4))
    max_items = draw(st.integers(1, 25))
    config = cat.CatConfig.with_targets(
        targets,
        se_target=draw(st.floats(0.05, 1.2)),
        min_items=draw(st.integers(0, max_items)),
        max_items=max_items,
        randomesque_k=draw(st.integers(1, 6)),
    )
    return cat.CatBank(bank, skills), config, draw(st.integers(0, 2**32 - 1)), draw(abilities)


@SETTINGS
@given(case=cat_cases())
def test_a_session_never_repeats_an_item_and_respects_its_limits(
    case: tuple[cat.CatBank, cat.CatConfig, int, float],
) -> None:
    bank, config, seed, ability = case
    rng = np.random.default_rng(seed)
    p = irt.bank_p_correct(bank.items, ability)
    state = cat.start(config)
    while (item := cat.next_item(state, bank, rng)) is not None:
        assert item not in state.items
        assert not config.skill_targets or bank.item_skills[item] in dict(config.skill_targets)
        state = cat.record_answer(state, item, bool(rng.random() < p[item]))
        assert len(state.items) <= config.max_items
        # The stored form survives every step.
        assert cat.CatState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    placed = cat.result(state, bank)
    assert placed.stop_reason is not None
    if placed.stop_reason is cat.StopReason.SE_REACHED:
        assert config.min_items <= placed.n_items
        assert placed.ability_se <= config.se_target
    assert all(0.0 <= m <= 1.0 for m in placed.skill_mastery.values())
