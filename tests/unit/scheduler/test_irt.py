"""IRT: response model, information, ability estimators, and MML-EM calibration recovery."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, optimize

from scheduler import irt


@pytest.fixture
def bank_3pl() -> irt.ItemBank:
    rng = np.random.default_rng(3)
    return irt.ItemBank(rng.uniform(0.6, 2.2, 40), rng.normal(0, 1, 40), rng.uniform(0, 0.3, 40))


# --- response model -----------------------------------------------------------------


def test_p_correct_matches_the_logistic_formula() -> None:
    # At θ = b the logistic part is 1/2; at a(θ - b) = log 3 it is 3/4.
    assert irt.p_correct(0.4, 1.7, 0.4, 0.2) == pytest.approx(0.2 + 0.8 * 0.5)
    assert irt.p_correct(math.log(3.0), 1.0, 0.0) == pytest.approx(0.75)
    assert irt.p_correct(1.0, 2.0, 0.5) == pytest.approx(1.0 / (1.0 + math.exp(-1.0)))


def test_rasch_bank_is_a_two_pl_bank_with_unit_slopes() -> None:
    difficulties = [-1.0, 0.0, 2.0]
    theta = np.linspace(-3, 3, 7)
    rasch = irt.bank_p_correct(irt.ItemBank.rasch(difficulties), theta)
    two_pl = irt.bank_p_correct(irt.ItemBank.two_pl([1.0, 1.0, 1.0], difficulties), theta)
    np.testing.assert_allclose(rasch, two_pl)


def test_bank_functions_are_outer_over_abilities_and_items(bank_3pl: irt.ItemBank) -> None:
    theta = np.linspace(-2, 2, 5)
    p = irt.bank_p_correct(bank_3pl, theta)
    info = irt.bank_information(bank_3pl, theta)
    assert p.shape == info.shape == (5, bank_3pl.n_items)
    np.testing.assert_allclose(
        p[2], irt.p_correct(theta[2], bank_3pl.a, bank_3pl.b, bank_3pl.c), rtol=1e-12
    )
    np.testing.assert_allclose(irt.total_information(bank_3pl, theta), info.sum(axis=1))


def test_two_pl_information_peaks_at_the_difficulty_with_a_squared_over_four() -> None:
    theta = np.linspace(-4, 4, 801)
    info = irt.item_information(theta, 1.8, 0.75)
    assert theta[np.argmax(info)] == pytest.approx(0.75)
    assert info.max() == pytest.approx(1.8**2 / 4)


def test_information_is_the_squared_slope_over_bernoulli_variance(
    bank_3pl: irt.ItemBank,
) -> None:
    # Fisher information of one binary answer: P'(θ)² / (P Q), P' by central differences.
    theta, h = np.linspace(-3, 3, 13), 1e-5
    slope = (irt.bank_p_correct(bank_3pl, theta + h) - irt.bank_p_correct(bank_3pl, theta - h)) / (
        2 * h
    )
    p = irt.bank_p_correct(bank_3pl, theta)
    np.testing.assert_allclose(
        irt.bank_information(bank_3pl, theta), slope**2 / (p * (1 - p)), rtol=1e-6
    )


def test_far_from_the_item_probabilities_and_information_stay_finite() -> None:
    with np.errstate(all="raise"):
        p = irt.p_correct(np.array([-1e4, 1e4]), 3.0, 0.0, np.array([0.0, 0.25]))
        info = irt.item_information(np.array([-1e4, 1e4]), 3.0, 0.0, np.array([0.0, 0.25]))
    np.testing.assert_allclose(p, [0.0, 1.0])
    np.testing.assert_allclose(info, [0.0, 0.0])


@pytest.mark.parametrize(
    ("a", "b", "c"),
    [
        ([0.0], [0.0], [0.0]),
        ([1.0], [0.0], [1.0]),
        ([1.0], [0.0], [-0.1]),
        ([1.0, 2.0], [0.0], [0.0]),
    ],
)
def test_item_bank_rejects_impossible_parameters(
    a: list[float], b: list[float], c: list[float]
) -> None:
    with pytest.raises(ValueError, match=r"must|length"):
        irt.ItemBank(np.array(a), np.array(b), np.array(c))


def test_item_bank_is_frozen_copy_and_round_trips_through_json_form() -> None:
    a = np.array([1.0, 1.5])
    bank = irt.ItemBank(a, np.array([0.0, 1.0]), np.array([0.0, 0.2]))
    a[0] = 99.0
    assert bank.a[0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        bank.a[0] = 2.0
    again = irt.ItemBank.from_dict(bank.to_dict())
    for name in ("a", "b", "c"):
        np.testing.assert_array_equal(getattr(again, name), getattr(bank, name))
    assert again.take([1]).to_dict() == {"a": [1.5], "b": [1.0], "c": [0.2]}


# --- ability estimation -------------------------------------------------------------


def test_eap_without_answers_is_the_prior() -> None:
    prior = irt.NormalPrior(mean=0.5, sd=0.8)
    estimate = irt.estimate_eap(irt.ItemBank.rasch([0.0]), [], [], prior)
    assert estimate.ability == pytest.approx(0.5, abs=1e-9)
    assert estimate.ability_se == pytest.approx(0.8, rel=1e-4)


def test_eap_matches_adaptive_numerical_integration(bank_3pl: irt.ItemBank) -> None:
    items = np.arange(12)
    scores = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1], dtype=float)

    def density(theta: float, power: int) -> float:
        p = irt.p_correct(theta, bank_3pl.a[items], bank_3pl.b[items], bank_3pl.c[items])
        likelihood = np.prod(np.where(scores == 1, p, 1 - p))
        return float(theta**power * likelihood * math.exp(-0.5 * theta**2))

    moments = [integrate.quad(density, -8, 8, args=(k,), epsabs=1e-13)[0] for k in range(3)]
    mean = moments[1] / moments[0]
    sd = math.sqrt(moments[2] / moments[0] - mean**2)
    estimate = irt.estimate_eap(bank_3pl, items, scores)
    assert estimate.ability == pytest.approx(mean, abs=1e-4)
    assert estimate.ability_se == pytest.approx(sd, abs=1e-4)


def test_incremental_updates_equal_the_batch_posterior(bank_3pl: irt.ItemBank) -> None:
    items = [5, 0, 17, 33, 2]
    scores = [1.0, 0.0, 1.0, 0.5, 0.0]
    posterior = irt.initial_posterior()
    for item, score in zip(items, scores, strict=True):
        posterior = irt.update_posterior(
            posterior, bank_3pl.a[item], bank_3pl.b[item], bank_3pl.c[item], score
        )
    batch = irt.posterior_for(bank_3pl, items, scores)
    assert posterior.n_responses == batch.n_responses == 5
    np.testing.assert_allclose(posterior.weights(), batch.weights(), atol=1e-12)
    incremental, recomputed = irt.summarize(posterior), irt.estimate_eap(bank_3pl, items, scores)
    assert incremental.ability == pytest.approx(recomputed.ability, abs=1e-12)
    assert incremental.ability_se == pytest.approx(recomputed.ability_se, abs=1e-12)


def test_eap_is_finite_and_ordered_for_all_right_and_all_wrong(bank_3pl: irt.ItemBank) -> None:
    items = np.arange(10)
    high = irt.estimate_eap(bank_3pl, items, np.ones(10))
    low = irt.estimate_eap(bank_3pl, items, np.zeros(10))
    middle = irt.estimate_eap(bank_3pl, items, np.arange(10) % 2)
    assert low.ability < middle.ability < high.ability
    assert all(0 < e.ability_se < 1 for e in (high, low, middle))


@pytest.mark.parametrize("scores", [[1, 0, 1, 1, 0, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]])
def test_map_and_ml_maximise_the_posterior_and_the_likelihood(
    bank_3pl: irt.ItemBank, scores: list[int]
) -> None:
    items = np.arange(10)
    u = np.asarray(scores, dtype=float)
    prior = irt.NormalPrior(0.2, 1.3)

    def neg_log_likelihood(theta: float) -> float:
        p = irt.p_correct(theta, bank_3pl.a[items], bank_3pl.b[items], bank_3pl.c[items])
        return -float(np.sum(u * np.log(p) + (1 - u) * np.log(1 - p)))

    def neg_log_posterior(theta: float) -> float:
        return neg_log_likelihood(theta) + 0.5 * ((theta - prior.mean) / prior.sd) ** 2

    best_map = optimize.minimize_scalar(neg_log_posterior, bounds=(-6, 6), method="bounded")
    best_ml = optimize.minimize_scalar(neg_log_likelihood, bounds=(-6, 6), method="bounded")
    map_estimate = irt.estimate_map(bank_3pl, items, u, prior)
    ml_estimate = irt.estimate_ml(bank_3pl, items, u, start=float(best_ml.x))
    assert map_estimate.ability == pytest.approx(best_map.x, abs=1e-3)
    assert ml_estimate.ability == pytest.approx(best_ml.x, abs=1e-3)
    info = float(irt.total_information(bank_3pl.take(items), ml_estimate.ability))
    assert ml_estimate.ability_se == pytest.approx(1 / math.sqrt(info))
    assert map_estimate.ability_se < 1 / math.sqrt(
        float(irt.total_information(bank_3pl.take(items), map_estimate.ability))
    )


def test_ml_of_an_all_correct_pattern_is_the_upper_bound(bank_3pl: irt.ItemBank) -> None:
    assert irt.estimate_ml(bank_3pl, [0, 1, 2], [1, 1, 1], bounds=(-5, 5)).ability == 5.0
    assert irt.estimate_ml(bank_3pl, [0, 1, 2], [0, 0, 0], bounds=(-5, 5)).ability == -5.0


def test_shifted_updates_are_bit_identical_to_one_update_and_shift_per_answer(
    bank_3pl: irt.ItemBank,
) -> None:
    items = [5, 0, 17, 33, 2, 5]
    scores = [1.0, 0.0, 1.0, 0.5, 0.0, 0.25]
    stepwise = irt.initial_posterior()
    for item, score in zip(items, scores, strict=True):
        after = irt.update_posterior(
            stepwise, bank_3pl.a[item], bank_3pl.b[item], bank_3pl.c[item], score
        )
        stepwise = irt.AbilityPosterior(
            after.points, after.log_density - after.log_density.max(), after.n_responses
        )
    index = np.array(items)
    at_once = irt.update_posterior_shifted(
        irt.initial_posterior(), bank_3pl.a[index], bank_3pl.b[index], bank_3pl.c[index], scores
    )
    assert at_once.n_responses == stepwise.n_responses == len(items)
    assert at_once.log_density.tolist() == stepwise.log_density.tolist()
    assert at_once.log_density.max() == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        irt.update_posterior_shifted(at_once, bank_3pl.a[:1], bank_3pl.b[:1], bank_3pl.c[:1], [1.5])


def test_scores_outside_the_unit_interval_are_refused(bank_3pl: irt.ItemBank) -> None:
    for bad in ([2.0], [-0.5], [math.nan]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            irt.estimate_eap(bank_3pl, [0], bad)
    with pytest.raises(ValueError, match="scores"):
        irt.estimate_eap(bank_3pl, [0, 1], [1.0])


# --- calibration --------------------------------------------------------------------


def _simulated(
    n_learners: int, n_items: int, model: str, seed: int, missing: float
) -> tuple[irt.ItemBank, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.6, 2.2, n_items) if model != "1PL" else np.ones(n_items)
    b = rng.normal(0.0, 1.0, n_items)
    c = rng.uniform(0.05, 0.25, n_items) if model == "3PL" else np.zeros(n_items)
    truth = irt.ItemBank(a, b, c)
    ability = rng.normal(size=n_learners)
    responses = irt.simulate_responses(truth, ability, rng)
    responses[rng.random(responses.shape) < missing] = np.nan
    return truth, ability, responses


def test_two_pl_calibration_recovers_generating_parameters_with_missing_answers() -> None:
    truth, ability, responses = _simulated(2000, 30, "2PL", seed=11, missing=0.2)
    fitted = irt.calibrate(responses, model="2PL")
    assert fitted.converged
    assert np.corrcoef(truth.a, fitted.bank.a)[0, 1] >= 0.95
    assert np.corrcoef(truth.b, fitted.bank.b)[0, 1] >= 0.95
    assert np.all(fitted.bank.c == 0)
    assert np.corrcoef(ability, fitted.ability)[0, 1] >= 0.9
    assert np.all(fitted.ability_se > 0)


def test_rasch_calibration_keeps_unit_slopes_and_recovers_difficulties() -> None:
    truth, _, responses = _simulated(1000, 20, "1PL", seed=12, missing=0.0)
    fitted = irt.calibrate(responses, model="1PL")
    np.testing.assert_allclose(fitted.bank.a, 1.0)
    assert np.corrcoef(truth.b, fitted.bank.b)[0, 1] >= 0.98


def test_three_pl_calibration_recovers_slopes_and_difficulties() -> None:
    truth, _, responses = _simulated(2000, 25, "3PL", seed=13, missing=0.0)
    fitted = irt.calibrate(responses, model="3PL")
    assert fitted.converged
    assert np.corrcoef(truth.b, fitted.bank.b)[0, 1] >= 0.95
    assert np.corrcoef(truth.a, fitted.bank.a)[0, 1] >= 0.85
    assert np.all((fitted.bank.c > 0) & (fitted.bank.c < 0.5))


def test_a_mask_is_the_same_as_nan_for_missing_answers() -> None:
    _, _, responses = _simulated(300, 8, "2PL", seed=14, missing=0.3)
    observed = ~np.isnan(responses)
    filled = np.where(observed, responses, 1.0)
    by_nan = irt.calibrate(responses, max_iter=20)
    by_mask = irt.calibrate(filled, mask=observed, max_iter=20)
    np.testing.assert_allclose(by_nan.bank.a, by_mask.bank.a)
    np.testing.assert_allclose(by_nan.bank.b, by_mask.bank.b)
    assert by_nan.log_likelihood == pytest.approx(by_mask.log_likelihood)


def test_em_without_priors_never_lowers_the_marginal_likelihood() -> None:
    _, _, responses = _simulated(500, 10, "2PL", seed=15, missing=0.1)
    flat = irt.CalibrationPriors(log_a_sd=None, intercept_sd=None)
    path = [irt.calibrate(responses, priors=flat, max_iter=k).log_likelihood for k in range(1, 9)]
    assert all(later >= earlier - 1e-6 for earlier, later in itertools.pairwise(path))
    assert path[-1] > path[0]


def test_calibration_refuses_non_binary_answers_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        irt.calibrate(np.array([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="learners × items"):
        irt.calibrate(np.array([0.0, 1.0]))
