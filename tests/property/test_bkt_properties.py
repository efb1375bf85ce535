"""BKT properties: probabilities stay in [0, 1], a correct answer never lowers mastery
under non-degenerate parameters, and fitted parameters respect their bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import bkt

probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
below_half = st.floats(min_value=0.0, max_value=0.4999, allow_nan=False)


@st.composite
def any_params(draw: st.DrawFn) -> bkt.BKTParams:
    return bkt.BKTParams(*(draw(probability) for _ in range(5)))


@st.composite
def sane_params(draw: st.DrawFn) -> bkt.BKTParams:
    """guess and slip below 0.5 (the default fit bounds); learn + forget <= 1."""
    learn = draw(probability)
    forget = draw(st.floats(min_value=0.0, max_value=1.0 - learn, allow_nan=False))
    return bkt.BKTParams(draw(probability), learn, draw(below_half), draw(below_half), forget)


@given(any_params(), probability, probability)
def test_update_and_prediction_stay_probabilities(
    params: bkt.BKTParams, p_mastery: float, score: float
) -> None:
    assert 0.0 <= bkt.predict_correct(p_mastery, params) <= 1.0
    assert 0.0 <= bkt.update(p_mastery, score, params) <= 1.0


@given(sane_params(), probability)
def test_correct_answer_never_lowers_mastery(params: bkt.BKTParams, p_mastery: float) -> None:
    after_right = bkt.update(p_mastery, 1.0, params)
    # Against the same transition without evidence, and against any lower score.
    no_evidence = p_mastery * (1.0 - params.forget) + (1.0 - p_mastery) * params.learn
    assert after_right >= no_evidence - 1e-12
    assert after_right >= bkt.update(p_mastery, 0.5, params) - 1e-12
    assert after_right >= bkt.update(p_mastery, 0.0, params) - 1e-12
    if params.forget == 0.0:
        assert after_right >= p_mastery - 1e-12


@given(
    st.lists(any_params(), min_size=1, max_size=3),
    st.lists(st.tuples(probability, probability, st.integers(0, 2)), min_size=1, max_size=30),
)
def test_update_many_stays_in_unit_interval(
    skills: list[bkt.BKTParams], events: list[tuple[float, float, int]]
) -> None:
    arrays = bkt.BKTParamArrays.from_params(skills)
    p_mastery = np.array([e[0] for e in events])
    score = np.array([e[1] for e in events])
    skill = np.array([e[2] % len(skills) for e in events])
    updated = bkt.update_many(p_mastery, score, skill, arrays)
    predicted = bkt.predict_correct_many(p_mastery, skill, arrays)
    assert np.all((updated >= 0.0) & (updated <= 1.0))
    assert np.all((predicted >= 0.0) & (predicted <= 1.0))


answer_logs = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 5), st.booleans()), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None)
@given(answer_logs, st.integers(0, 2**32 - 1), st.booleans())
def test_fitted_params_respect_bounds_and_predictions_are_probabilities(
    answers: list[tuple[int, int, bool]], seed: int, forgets: bool
) -> None:
    bounds = bkt.BKTBounds(guess=(0.05, 0.3), slip=(0.02, 0.2), learn=(0.01, 0.5))
    sequences = bkt.build_sequences(
        [a[0] for a in answers], [a[1] for a in answers], [a[2] for a in answers], n_skills=3
    )
    fit = bkt.fit_em(
        sequences, np.random.default_rng(seed), restarts=2, forgets=forgets, bounds=bounds
    )
    for skill in fit.skills:
        if skill.n_answers == 0:
            continue
        for name in bkt.PARAM_NAMES:
            value = getattr(skill.params, name)
            if name == "forget" and not forgets:
                assert value == 0.0
                continue
            low, high = getattr(bounds, name)
            assert low <= value <= high
        assert not bkt.is_degenerate(skill.params)
        assert np.isfinite(skill.log_likelihood)
    predicted = bkt.predict_sequences(fit.param_arrays(), sequences)
    assert np.all((predicted >= 0.0) & (predicted <= 1.0))
