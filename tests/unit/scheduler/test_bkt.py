"""BKT: per-event update by hand, vectorised forms against the scalar one, EM recovery."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

from scheduler import bkt

PARAMS = bkt.BKTParams(prior=0.3, learn=0.15, guess=0.2, slip=0.1, forget=0.0)


# --------------------------------------------------------------------------- per event


def test_predict_correct_by_hand() -> None:
    # 0.4 * (1 - 0.1) + 0.6 * 0.2
    assert bkt.predict_correct(0.4, PARAMS) == pytest.approx(0.48)


def test_update_after_correct_by_hand() -> None:
    # posterior 0.36 / 0.48 = 0.75, then 0.75 + 0.25 * 0.15 = 0.7875
    assert bkt.update(0.4, 1.0, PARAMS) == pytest.approx(0.7875)


def test_update_after_wrong_by_hand() -> None:
    # posterior 0.04 / 0.52 = 1/13, then 1/13 + 12/13 * 0.15
    assert bkt.update(0.4, 0.0, PARAMS) == pytest.approx(1 / 13 + 12 / 13 * 0.15)


def test_update_with_forget_by_hand() -> None:
    params = bkt.BKTParams(prior=0.3, learn=0.15, guess=0.2, slip=0.1, forget=0.05)
    # posterior 0.75, then 0.75 * 0.95 + 0.25 * 0.15
    assert bkt.update(0.4, 1.0, params) == pytest.approx(0.75)


def test_partial_score_mixes_the_two_posteriors() -> None:
    posterior = 0.5 * 0.75 + 0.5 * (1 / 13)
    assert bkt.update(0.4, 0.5, PARAMS) == pytest.approx(posterior + (1 - posterior) * 0.15)


def test_params_and_bounds_refuse_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="slip"):
        bkt.BKTParams(slip=1.5)
    with pytest.raises(ValueError, match="guess"):
        bkt.BKTBounds(guess=(0.4, 0.3))


def test_is_degenerate() -> None:
    assert not bkt.is_degenerate(PARAMS)
    assert bkt.is_degenerate(bkt.BKTParams(guess=0.55))
    assert bkt.is_degenerate(bkt.BKTParams(slip=0.5))


def test_update_many_matches_scalar_update() -> None:
    rng = np.random.default_rng(7)
    skills = [
        bkt.BKTParams(*rng.uniform(0.01, 0.45, size=5)) for _ in range(4)
    ]  # prior, learn, guess, slip, forget
    arrays = bkt.BKTParamArrays.from_params(skills)
    p_mastery = rng.random(200)
    score = rng.choice([0.0, 0.3, 1.0], size=200)
    skill = rng.integers(0, 4, size=200)
    expected = [
        bkt.update(float(p), float(s), skills[k])
        for p, s, k in zip(p_mastery, score, skill, strict=True)
    ]
    expected_correct = [
        bkt.predict_correct(float(p), skills[k]) for p, k in zip(p_mastery, skill, strict=True)
    ]
    np.testing.assert_allclose(bkt.update_many(p_mastery, score, skill, arrays), expected)
    np.testing.assert_allclose(bkt.predict_correct_many(p_mastery, skill, arrays), expected_correct)


# --------------------------------------------------------------------------- sequences


def _ragged_answers(rng: np.random.Generator, n_learners: int, n_skills: int):
    """Interleaved answers of learners on skills, with sequences of many lengths."""
    skill, learner, correct = [], [], []
    for who in range(n_learners):
        count = int(rng.integers(1, 40))
        skill += list(rng.integers(0, n_skills, size=count))
        learner += [who] * count
        correct += list(rng.integers(0, 2, size=count))
    return np.array(skill), np.array(learner), np.array(correct)


def test_build_sequences_groups_by_skill_and_learner_in_order() -> None:
    seqs = bkt.build_sequences(
        skill=[1, 0, 1, 1, 0], learner=[9, 9, 9, 4, 4], correct=[1, 0, 0, 1, 1]
    )
    assert seqs.n_skills == 2
    assert seqs.n_sequences == 4  # (0,4) (0,9) (1,4) (1,9)
    # learner 9 on skill 1: answers 0 then 2
    assert seqs.sequence[0] == seqs.sequence[2]
    assert (seqs.step[0], seqs.step[2]) == (0, 1)
    assert sorted(seqs.sequence_length.tolist()) == [1, 1, 1, 2]


def test_build_sequences_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0 and 1"):
        bkt.build_sequences([0, 0], [1, 1], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        bkt.build_sequences([0, 0], [1], [1, 0])
    with pytest.raises(ValueError, match="out of range"):
        bkt.build_sequences([0, 3], [1, 1], [1, 0], n_skills=2)


def test_predict_sequences_matches_event_by_event_updates() -> None:
    rng = np.random.default_rng(11)
    skill, learner, correct = _ragged_answers(rng, n_learners=60, n_skills=3)
    params = [
        bkt.BKTParams(0.2, 0.1, 0.25, 0.1, 0.0),
        bkt.BKTParams(0.6, 0.3, 0.1, 0.2, 0.05),
        bkt.BKTParams(0.05, 0.02, 0.4, 0.05, 0.2),
    ]
    predicted = bkt.predict_sequences(
        bkt.BKTParamArrays.from_params(params), bkt.build_sequences(skill, learner, correct)
    )
    p_mastery: dict[tuple[int, int], float] = {}
    for i, (k, who, right) in enumerate(zip(skill, learner, correct, strict=True)):
        p = p_mastery.get((k, who), params[k].prior)
        assert predicted[i] == pytest.approx(bkt.predict_correct(p, params[k]), abs=1e-12)
        p_mastery[(k, who)] = bkt.update(p, float(right), params[k])


def _brute_force_log_likelihood(answers: list[int], params: bkt.BKTParams) -> float:
    """Sum over every hidden mastery path (exponential; tiny sequences only)."""
    total = 0.0
    for path in itertools.product((0, 1), repeat=len(answers)):
        p = params.prior if path[0] else 1 - params.prior
        for t, (known, right) in enumerate(zip(path, answers, strict=True)):
            if t:
                was = path[t - 1]
                move = (
                    (1 - params.forget if known else params.forget)
                    if was
                    else (params.learn if known else 1 - params.learn)
                )
                p *= move
            p_right = 1 - params.slip if known else params.guess
            p *= p_right if right else 1 - p_right
        total += p
    return math.log(total)


def test_log_likelihood_matches_brute_force_enumeration() -> None:
    params = bkt.BKTParams(prior=0.35, learn=0.2, guess=0.25, slip=0.15, forget=0.1)
    sequences = [[1, 0, 1, 1, 0, 1], [0, 0], [1], [0, 1, 1, 0, 0, 1, 1, 1]]
    skill = [0] * sum(map(len, sequences))
    learner = [i for i, s in enumerate(sequences) for _ in s]
    correct = [a for s in sequences for a in s]
    measured = bkt.log_likelihood(
        bkt.BKTParamArrays.from_params([params]), bkt.build_sequences(skill, learner, correct)
    )
    expected = sum(_brute_force_log_likelihood(s, params) for s in sequences)
    assert measured[0] == pytest.approx(expected, rel=1e-12)


def _decimal_log_likelihood(answers: list[int], params: bkt.BKTParams) -> float:
    """The forward algorithm in 80-digit decimal arithmetic (forget = 0)."""
    with localcontext() as context:
        context.prec = 80
        guess, slip, learn = Decimal(params.guess), Decimal(params.slip), Decimal(params.learn)
        unknown, known = 1 - Decimal(params.prior), Decimal(params.prior)
        total = Decimal(0)
        for right in answers:
            joint_unknown = unknown * (guess if right else 1 - guess)
            joint_known = known * ((1 - slip) if right else slip)
            marginal = joint_unknown + joint_known
            total += marginal.ln()
            unknown = joint_unknown / marginal * (1 - learn)
            known = joint_unknown / marginal * learn + joint_known / marginal
    return float(total)


def test_long_run_of_correct_then_wrong_answers_is_scored_exactly() -> None:
    # After a long run of correct answers P(not mastered) is far below float64's
    # resolution next to 1. A filter that keeps only p_mastery loses it (and can round
    # above 1, which wrong answers then amplify): 74 nats off on this sequence.
    params = bkt.BKTParams(prior=0.87, learn=0.003, guess=0.38, slip=0.003)
    answers = [1] * 120 + [0] * 36
    sequences = bkt.build_sequences([0] * len(answers), [0] * len(answers), answers)
    arrays = bkt.BKTParamArrays.from_params([params])
    measured = bkt.log_likelihood(arrays, sequences)[0]
    assert measured == pytest.approx(_decimal_log_likelihood(answers, params), abs=1e-6)
    assert np.all(
        (bkt.predict_sequences(arrays, sequences) >= 0)
        & (bkt.predict_sequences(arrays, sequences) <= 1)
    )


# --------------------------------------------------------------------------- EM


def _simulated(
    truth: list[bkt.BKTParams], n_learners: int, n_steps: int, seed: int
) -> bkt.Sequences:
    rng = np.random.default_rng(seed)
    skill, learner, correct = [], [], []
    for k, params in enumerate(truth):
        answers = bkt.simulate_answers(params, n_learners, n_steps, rng)
        skill.append(np.full(answers.size, k))
        learner.append(np.repeat(np.arange(n_learners), n_steps))
        correct.append(answers.ravel())
    return bkt.build_sequences(
        np.concatenate(skill), np.concatenate(learner), np.concatenate(correct)
    )


def test_em_recovers_generating_parameters() -> None:
    truth = [
        bkt.BKTParams(prior=0.3, learn=0.15, guess=0.2, slip=0.1),
        bkt.BKTParams(prior=0.6, learn=0.05, guess=0.3, slip=0.05),
    ]
    fit = bkt.fit_em(_simulated(truth, 1500, 20, seed=1), np.random.default_rng(2))
    for skill, params in enumerate(truth):
        fitted = fit.skills[skill]
        assert fitted.converged
        assert fitted.params.forget == 0.0
        for name in ("prior", "learn", "guess", "slip"):
            assert getattr(fitted.params, name) == pytest.approx(getattr(params, name), abs=0.03)


def test_em_with_forgets_recovers_forget() -> None:
    truth = [bkt.BKTParams(prior=0.4, learn=0.2, guess=0.2, slip=0.1, forget=0.08)]
    fit = bkt.fit_em(_simulated(truth, 2000, 25, seed=3), np.random.default_rng(4), forgets=True)
    fitted = fit.skills[0].params
    for name in bkt.PARAM_NAMES:
        assert getattr(fitted, name) == pytest.approx(getattr(truth[0], name), abs=0.04)


def test_em_never_lowers_the_likelihood_and_reports_the_returned_params() -> None:
    sequences = _simulated([bkt.BKTParams(0.4, 0.1, 0.25, 0.1)], 300, 15, seed=5)
    previous = -math.inf
    for max_iter in range(1, 8):
        fit = bkt.fit_em(sequences, np.random.default_rng(6), restarts=1, max_iter=max_iter, tol=0)
        recomputed = bkt.log_likelihood(fit.param_arrays(), sequences)[0]
        assert fit.skills[0].log_likelihood == pytest.approx(recomputed, rel=1e-12)
        assert fit.skills[0].iterations == max_iter
        assert recomputed >= previous - 1e-9
        previous = recomputed


def test_bounds_stop_degenerate_fits() -> None:
    # Learners who mostly answer right while "not mastered": an unconstrained fit
    # swaps the meaning of the states (guess > 0.5).
    truth = [bkt.BKTParams(prior=0.2, learn=0.02, guess=0.75, slip=0.02)]
    sequences = _simulated(truth, 800, 20, seed=8)
    loose = bkt.fit_em(sequences, np.random.default_rng(9), bounds=bkt.BKTBounds.loose())
    bounded = bkt.fit_em(sequences, np.random.default_rng(9))
    assert bkt.is_degenerate(loose.skills[0].params)
    assert not bkt.is_degenerate(bounded.skills[0].params)
    assert bounded.skills[0].params.guess <= bkt.DEFAULT_BOUNDS.guess[1]


def test_skill_without_answers_keeps_the_fallback() -> None:
    sequences = bkt.build_sequences([0, 0, 2], [1, 1, 1], [1, 0, 1], n_skills=3)
    fit = bkt.fit_em(sequences, np.random.default_rng(0), restarts=2)
    assert fit.skills[1].n_answers == 0
    assert fit.skills[1].params == bkt.DEFAULT_PARAMS
    assert fit.param_arrays().n_skills == 3


def test_fit_is_reproducible_with_the_same_seed() -> None:
    sequences = _simulated([bkt.BKTParams(0.4, 0.1, 0.25, 0.1)], 200, 10, seed=10)
    first = bkt.fit_em(sequences, np.random.default_rng(42))
    second = bkt.fit_em(sequences, np.random.default_rng(42))
    assert first == second
