"""Item calibration from a learners × items answer matrix.

Item calibration is marginal maximum likelihood by EM (Bock & Aitkin, 1981) on a
quadrature grid, with optional priors (lognormal on ``a``, normal on the intercept,
Beta on ``c``) that keep items with few or extreme answers finite. Each M-step is a few
Fisher-scoring steps on (log a, intercept, logit c), batched over items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logsumexp

from scheduler.irt.model import FloatArray, ItemBank, Model, log_p_q


@dataclass(frozen=True, slots=True)
class CalibrationPriors:
    """Priors that keep calibration finite for items with few or extreme answers.

    ``log_a_sd``: sd of a N(0, sd²) prior on log a (None: no prior). ``intercept_sd``: sd
    of a N(0, sd²) prior on the intercept ``-a·b`` (None: none). ``guess_alpha`` and
    ``guess_beta``: Beta prior on ``c`` for 3PL (default mode 0.2, about five options).
    """

    log_a_sd: float | None = 1.0
    intercept_sd: float | None = 5.0
    guess_alpha: float = 5.0
    guess_beta: float = 17.0


@dataclass(frozen=True, eq=False)
class Calibration:
    """Result of :func:`calibrate`.

    ``bank``: the estimated items; ``log_likelihood``: marginal log-likelihood of the
    observed answers (nats) at the estimate; ``ability``/``ability_se``: each learner's
    EAP and posterior SD (logits) under the estimated items.
    """

    bank: ItemBank
    log_likelihood: float
    n_iterations: int
    converged: bool
    ability: FloatArray
    ability_se: FloatArray


def _as_response_matrix(
    responses: npt.ArrayLike, mask: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray]:
    matrix = np.asarray(responses, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"responses must be learners × items, got shape {matrix.shape}")
    observed = ~np.isnan(matrix)
    if mask is not None:
        observed &= np.asarray(mask, dtype=bool)
    values = np.where(observed, matrix, 0.0)
    if np.any((values != 0.0) & (values != 1.0)):
        raise ValueError("observed responses must be 0 or 1")
    return values, observed.astype(np.float64)


def _m_step(
    params: FloatArray,
    points: FloatArray,
    correct: FloatArray,
    trials: FloatArray,
    priors: CalibrationPriors,
    model: Model,
    steps: int = 4,
) -> FloatArray:
    """A few Fisher-scoring steps on every item's expected complete-data log posterior.

    ``params`` rows are (log a, intercept, logit c), one column per item; the linear
    predictor is ``a·θ + intercept``. ``correct``/``trials`` are the E-step's expected
    counts per grid point × item. The per-item systems (1 × 1 to 3 × 3) are solved in one
    batched call, so the M-step is vectorised over items. Unknowns: 1PL the intercept;
    2PL adds log a; 3PL adds logit c (a Beta prior on c, mode kept in c-space).
    """
    active = {"1PL": [1], "2PL": [0, 1], "3PL": [0, 1, 2]}[model]
    precision = np.array(
        [
            0.0 if priors.log_a_sd is None else 1.0 / priors.log_a_sd**2,
            0.0 if priors.intercept_sd is None else 1.0 / priors.intercept_sd**2,
        ]
    )
    theta = points[:, None]
    params = params.copy()
    for _ in range(steps):
        a, c = np.exp(params[0]), expit(params[2]) if model == "3PL" else np.zeros(params.shape[1])
        knows = expit(a * theta + params[1])
        p = np.clip(c + (1.0 - c) * knows, 1e-12, 1.0 - 1e-12)
        slope = (1.0 - c) * knows * (1.0 - knows)
        # dP/d(log a), dP/d(intercept), dP/d(logit c); grid points × items each.
        d_p = np.stack([slope * a * theta, slope, (1.0 - knows) * c * (1.0 - c)])[active]
        weight = trials / (p * (1.0 - p))
        gradient = np.einsum("kqj,qj->jk", d_p, (correct - trials * p) / (p * (1.0 - p)))
        fisher = np.einsum("kqj,lqj,qj->jkl", d_p, d_p, weight)
        for row, k in enumerate(active):
            if k < 2:
                gradient[:, row] -= params[k] * precision[k]
                fisher[:, row, row] += precision[k]
            else:
                alpha, beta = priors.guess_alpha - 1.0, priors.guess_beta - 1.0
                gradient[:, row] += alpha * (1.0 - c) - beta * c
                fisher[:, row, row] += (alpha + beta) * c * (1.0 - c)
        fisher += 1e-9 * np.eye(len(active))  # an item nobody answered stays put
        step = np.linalg.solve(fisher, gradient[:, :, None])[:, :, 0]
        params[active] += np.clip(step.T, -1.0, 1.0)
    return params


def _starting_params(
    values: FloatArray, observed: FloatArray, priors: CalibrationPriors
) -> FloatArray:
    """(log a, intercept, logit c) rows per item before the first EM iteration.

    Starts from the classical item statistics: a = 1, intercept = logit of the
    (smoothed) proportion correct, c at the mode of its Beta prior.
    """
    n_items = values.shape[1]
    p_value = (values.sum(axis=0) + 0.5) / (observed.sum(axis=0) + 1.0)
    guess_mode = (priors.guess_alpha - 1.0) / (priors.guess_alpha + priors.guess_beta - 2.0)
    return np.stack(
        [
            np.zeros(n_items),
            np.log(p_value / (1.0 - p_value)),
            np.full(n_items, np.log(guess_mode / (1.0 - guess_mode))),
        ]
    )


def calibrate(
    responses: npt.ArrayLike,
    *,
    model: Model = "2PL",
    mask: npt.ArrayLike | None = None,
    priors: CalibrationPriors = CalibrationPriors(),
    n_points: int = 41,
    max_iter: int = 500,
    tol: float = 1e-4,
) -> Calibration:
    """Item parameters from a learners × items answer matrix by MML-EM (Bock–Aitkin).

    ``responses``: 1 correct, 0 wrong, NaN not answered (or pass ``mask``, True where
    answered). ``model``: "1PL" (a = 1, c = 0), "2PL" or "3PL". Abilities are integrated
    over a N(0, 1) population on ``n_points`` points in ±5 logits, which also fixes the
    scale. Stops when no a, intercept or c moves more than ``tol`` in an iteration, or
    after ``max_iter`` iterations (``converged`` False). Cost per iteration
    O(learners × items × n_points).
    """
    if model not in ("1PL", "2PL", "3PL"):
        raise ValueError(f"model must be 1PL, 2PL or 3PL, got {model!r}")
    values, observed = _as_response_matrix(responses, mask)
    wrong = observed - values
    n_items = values.shape[1]
    points = np.linspace(-5.0, 5.0, n_points)
    log_population = -0.5 * points**2
    log_population -= logsumexp(log_population)

    params = _starting_params(values, observed, priors)

    def bank_of(params: FloatArray) -> ItemBank:
        a = np.exp(params[0])
        c = expit(params[2]) if model == "3PL" else np.zeros(n_items)
        return ItemBank(a, -params[1] / a, c)

    def e_step(bank: ItemBank) -> tuple[FloatArray, FloatArray]:
        log_p, log_q = log_p_q(points, bank.a, bank.b, bank.c)
        log_joint = values @ log_p.T + wrong @ log_q.T + log_population
        per_learner = logsumexp(log_joint, axis=1)
        return np.exp(log_joint - per_learner[:, None]), per_learner

    converged = False
    iteration = 0
    bank = bank_of(params)
    for iteration in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        posterior, _ = e_step(bank)
        trials = posterior.T @ observed  # expected answers per grid point × item
        correct = posterior.T @ values
        params = _m_step(params, points, correct, trials, priors, model)
        new_bank = bank_of(params)
        change = max(
            np.max(np.abs(np.log(new_bank.a) - np.log(bank.a))),
            np.max(np.abs(new_bank.a * new_bank.b - bank.a * bank.b)),
            np.max(np.abs(new_bank.c - bank.c)),
        )
        bank = new_bank
        if change < tol:
            converged = True
            break

    posterior, per_learner = e_step(bank)
    ability = posterior @ points
    ability_se = np.sqrt(np.maximum(posterior @ points**2 - ability**2, 0.0))
    return Calibration(
        bank=bank,
        log_likelihood=float(per_learner.sum()),
        n_iterations=iteration,
        converged=converged,
        ability=np.asarray(ability),
        ability_se=np.asarray(ability_se),
    )
