"""Item Response Theory: the 1PL/2PL/3PL response model, ability estimation, calibration.

The model is the logistic one on the logit metric (no 1.7 scaling constant, the same
metric as catsim)::

    P(correct | θ) = c + (1 - c) / (1 + exp(-a (θ - b)))

``θ`` is the learner's ability in logits (the calibration population is N(0, 1)),
``a > 0`` the item's discrimination, ``b`` its difficulty on the ability scale and
``c`` in [0, 1) its guessing floor. 1PL (Rasch) is ``a = 1, c = 0``; 2PL is ``c = 0``.

Three ability estimators, each returning an :class:`AbilityEstimate`:

* EAP (expected a posteriori) on a fixed quadrature grid with a normal prior; the
  standard error is the posterior standard deviation. It is finite for every answer
  pattern (all right, all wrong), so it is the default for placement and streams.
  :func:`update_posterior` adds one answer in O(grid) for a stream processor that keeps
  the posterior; :func:`estimate_eap` recomputes it from the answers so far.
* MAP and ML by Fisher scoring, bounded to an ability interval; the standard error is
  ``1 / sqrt(information)`` at the estimate (plus the prior precision for MAP).

Item calibration is marginal maximum likelihood by EM (Bock & Aitkin, 1981) on a
quadrature grid, with optional priors (lognormal on ``a``, normal on the intercept,
Beta on ``c``) that keep items with few or extreme answers finite. Each M-step is a few
Fisher-scoring steps on (log a, intercept, logit c), batched over items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logsumexp

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
Model = Literal["1PL", "2PL", "3PL"]

# Ability range (logits) used by ML/MAP bounds and the calibration grid: beyond ±6 the
# probabilities of any reasonable item are within 1e-3 of their asymptotes.
ABILITY_BOUNDS = (-6.0, 6.0)


def _frozen_vector(values: npt.ArrayLike, name: str) -> FloatArray:
    vector = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"item parameter {name} must be finite")
    vector.setflags(write=False)
    return vector


@dataclass(frozen=True, eq=False)
class ItemBank:
    """Parameters of ``n_items`` items, as three read-only float arrays of equal length.

    ``a`` discrimination (> 0), ``b`` difficulty (logits), ``c`` guessing floor in [0, 1).
    Arrays are copied and frozen on construction, so a bank can be shared freely.
    """

    a: FloatArray
    b: FloatArray
    c: FloatArray
    # log c (-inf where c = 0), kept because item selection needs it for every item.
    log_c: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        a = _frozen_vector(self.a, "a")
        b = _frozen_vector(self.b, "b")
        c = _frozen_vector(self.c, "c")
        if not a.shape == b.shape == c.shape:
            raise ValueError(f"a, b and c must have one length, got {a.size}, {b.size}, {c.size}")
        if np.any(a <= 0):
            raise ValueError("discrimination a must be > 0")
        if np.any((c < 0) | (c >= 1)):
            raise ValueError("guessing c must be in [0, 1)")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        log_c = _log_guess(c)
        log_c.setflags(write=False)
        object.__setattr__(self, "log_c", log_c)

    @classmethod
    def rasch(cls, b: npt.ArrayLike) -> ItemBank:
        """1PL bank: difficulties ``b`` (logits), ``a = 1``, ``c = 0``."""
        b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
        return cls(np.ones_like(b_arr), b_arr, np.zeros_like(b_arr))

    @classmethod
    def two_pl(cls, a: npt.ArrayLike, b: npt.ArrayLike) -> ItemBank:
        """2PL bank: discriminations ``a`` and difficulties ``b``, ``c = 0``."""
        b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
        return cls(np.asarray(a, dtype=np.float64), b_arr, np.zeros_like(b_arr))

    @property
    def n_items(self) -> int:
        """Number of items in the bank."""
        return int(self.a.size)

    def __len__(self) -> int:
        return self.n_items

    def take(self, items: npt.ArrayLike) -> ItemBank:
        """The sub-bank of the given item indices, in that order."""
        index = np.asarray(items, dtype=np.intp)
        return ItemBank(self.a[index], self.b[index], self.c[index])

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form: ``{"a": [...], "b": [...], "c": [...]}``."""
        return {"a": self.a.tolist(), "b": self.b.tolist(), "c": self.c.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ItemBank:
        """Inverse of :meth:`to_dict`; a missing ``c`` means a 2PL bank."""
        b = np.asarray(raw["b"], dtype=np.float64)
        return cls(np.asarray(raw["a"], dtype=np.float64), b, np.asarray(raw.get("c", 0.0 * b)))


# --- response model -----------------------------------------------------------------


def p_correct(
    theta: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike = 0.0
) -> FloatArray:
    """P(correct) in [c, 1] for ability ``theta`` (logits); all arguments broadcast.

    Uses the overflow-free logistic, so any finite input gives a finite probability.
    """
    theta_arr = np.asarray(theta, dtype=np.float64)
    c_arr = np.asarray(c, dtype=np.float64)
    knows = expit(np.asarray(a, dtype=np.float64) * (theta_arr - np.asarray(b, dtype=np.float64)))
    return np.asarray(c_arr + (1.0 - c_arr) * knows, dtype=np.float64)


def _log_guess(c: FloatArray) -> FloatArray:
    """log c with log 0 = -inf, without a divide-by-zero warning."""
    return np.log(c, out=np.full_like(c, -np.inf), where=c > 0)


def _information(z: FloatArray, a: FloatArray, c: FloatArray, log_c: FloatArray) -> FloatArray:
    # I = a² (1 - c) s² (1 - s) / P with s = σ(z) and P = c + (1 - c) s. The share s / P
    # equals σ(z - log c) (1 for a 2PL item), which never divides 0 by 0 where s underflows.
    knows = expit(z)
    return np.asarray(a**2 * (1.0 - c) * knows * (1.0 - knows) * expit(z - log_c))


def item_information(
    theta: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike = 0.0
) -> FloatArray:
    """Fisher information (≥ 0, in 1/logit²) of the items at ``theta``; arguments broadcast.

    ``I = a² (P - c)² Q / ((1 - c)² P)``, computed in a form that stays finite and exact
    where ``P`` underflows (a 2PL item far above the learner), where the limit is 0.
    """
    a_arr = np.asarray(a, dtype=np.float64)
    c_arr = np.asarray(c, dtype=np.float64)
    z = a_arr * (np.asarray(theta, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return _information(z, a_arr, c_arr, _log_guess(c_arr))


def bank_p_correct(bank: ItemBank, theta: npt.ArrayLike) -> FloatArray:
    """P(correct) for every ability × every item: shape ``theta.shape + (n_items,)``."""
    return p_correct(np.asarray(theta, dtype=np.float64)[..., None], bank.a, bank.b, bank.c)


def bank_information(bank: ItemBank, theta: npt.ArrayLike) -> FloatArray:
    """Item information for every ability × every item: shape ``theta.shape + (n_items,)``."""
    z = bank.a * (np.asarray(theta, dtype=np.float64)[..., None] - bank.b)
    return _information(z, bank.a, bank.c, bank.log_c)


def total_information(bank: ItemBank, theta: npt.ArrayLike) -> FloatArray:
    """Test information: the sum of the bank's item information at each ability.

    Shape ``theta.shape``; ≥ 0, in 1/logit². (Not named ``test_*`` so pytest never collects it.)
    """
    return np.asarray(bank_information(bank, theta).sum(axis=-1))


def log_p_q(
    theta: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """log P(correct) and log P(wrong), outer over ``theta`` (rows) × items (columns).

    Never takes log(0): with ``z = a (θ - b)`` floored at -500 (below it σ(z) < 1e-217
    anyway), log σ(z) = min(z, 0) - log1p(exp(-|z|)), log σ(-z) = log σ(z) - z,
    log Q = log(1 - c) + log σ(-z) and log P = log σ(z) + log1p(c · exp(-z)). These are
    plain exp/log1p calls, several times faster than scipy's log_expit on small grids.
    """
    z = np.maximum(a * (theta[:, None] - b), -500.0)
    log_knows = np.minimum(z, 0.0) - np.log1p(np.exp(-np.abs(z)))
    log_q = np.log1p(-c) + (log_knows - z)
    if not (c > 0).any():  # the method: np.any's dispatch costs twice as much on small arrays
        return log_knows, log_q
    return log_knows + np.log1p(c * np.exp(-z)), log_q


# --- ability estimation -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NormalPrior:
    """Normal prior on ability and the quadrature grid EAP integrates on.

    ``mean``/``sd`` in logits (sd > 0). The grid has ``n_points`` equally spaced points on
    ``mean ± half_width_sd · sd``; 81 points over ±5 sd are accurate to well under 0.01
    logit for posterior SDs down to 0.1.
    """

    mean: float = 0.0
    sd: float = 1.0
    n_points: int = 81
    half_width_sd: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and self.sd > 0 and math.isfinite(self.sd)):
            raise ValueError(f"prior needs a finite mean and sd > 0, got {self.mean}, {self.sd}")
        if self.n_points < 3 or self.half_width_sd <= 0:
            raise ValueError("prior grid needs n_points >= 3 and half_width_sd > 0")


@lru_cache(maxsize=64)
def quadrature(prior: NormalPrior) -> tuple[FloatArray, FloatArray]:
    """Grid points (logits) and normalised log prior weights for ``prior`` (cached)."""
    half = prior.half_width_sd * prior.sd
    points = np.linspace(prior.mean - half, prior.mean + half, prior.n_points)
    log_weights = -0.5 * ((points - prior.mean) / prior.sd) ** 2
    log_weights -= logsumexp(log_weights)
    points.setflags(write=False)
    log_weights.setflags(write=False)
    return points, log_weights


@dataclass(frozen=True, slots=True)
class AbilityEstimate:
    """An ability estimate (logits) and its standard error (logits, > 0)."""

    ability: float
    ability_se: float


@dataclass(frozen=True, eq=False)
class AbilityPosterior:
    """Unnormalised log posterior of ability on a quadrature grid.

    Small enough (``n_points`` floats) for a stream processor to keep per learner and
    update answer by answer with :func:`update_posterior`.
    """

    points: FloatArray
    log_density: FloatArray
    n_responses: int = 0

    def weights(self) -> FloatArray:
        """Normalised posterior probabilities of the grid points (sum to 1)."""
        w = np.exp(self.log_density - self.log_density.max())
        return np.asarray(w / w.sum())


def initial_posterior(prior: NormalPrior = NormalPrior()) -> AbilityPosterior:
    """The posterior before any answer: the prior itself on its grid."""
    points, log_weights = quadrature(prior)
    return AbilityPosterior(points, log_weights, 0)


def _check_scores(scores: npt.ArrayLike) -> FloatArray:
    score_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    # Written with min/max so NaN fails too (every comparison with NaN is False).
    if score_arr.size and not (score_arr.min() >= 0.0 and score_arr.max() <= 1.0):
        raise ValueError("scores must be in [0, 1] (1 correct, 0 wrong)")
    return score_arr


def update_posterior(
    posterior: AbilityPosterior, a: float, b: float, c: float, score: float
) -> AbilityPosterior:
    """Posterior after one more answer to item ``(a, b, c)``; O(grid), no other state.

    ``score`` in [0, 1]: 1 correct, 0 wrong; a partial score weights the two likelihoods
    (a pseudo-likelihood, the same convention as the BKT update).
    """
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be in [0, 1], got {score}")
    log_p, log_q = log_p_q(
        posterior.points, np.array([a], dtype=np.float64), np.array([b]), np.array([c])
    )
    log_density = posterior.log_density + score * log_p[:, 0] + (1.0 - score) * log_q[:, 0]
    return AbilityPosterior(posterior.points, log_density, posterior.n_responses + 1)


def update_posterior_shifted(
    posterior: AbilityPosterior,
    a: FloatArray,
    b: FloatArray,
    c: FloatArray,
    scores: Sequence[float],
) -> AbilityPosterior:
    """Posterior after answers ``scores[i]`` (each in [0, 1]) to items ``(a[i], b[i], c[i])``,
    in order, with the log density shifted to a maximum of 0 after every answer.

    Bit-identical to :func:`update_posterior` answer by answer, each followed by the shift,
    so a stream processor that stores the shifted density gets the same numbers however
    answers fall into batches; only the likelihoods are computed at once (one
    :func:`log_p_q` over the items, column by column the same numbers). The shift keeps
    the numbers bounded after thousands of answers without changing the weights.
    """
    log_p, log_q = log_p_q(posterior.points, a, b, c)
    return add_likelihoods_shifted(posterior, log_p, log_q, scores)


def add_likelihoods_shifted(
    posterior: AbilityPosterior, log_p: FloatArray, log_q: FloatArray, scores: Sequence[float]
) -> AbilityPosterior:
    """:func:`update_posterior_shifted` from likelihoods already computed: column ``i`` of
    ``log_p``/``log_q`` is :func:`log_p_q` over ``posterior.points`` for answer ``i``.

    For callers that update many posteriors on one grid: one :func:`log_p_q` over all
    their answers gives, column by column, the same numbers as one call per posterior.
    """
    for score in scores:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {score}")
    density = posterior.log_density
    for column, score in enumerate(scores):
        density = density + score * log_p[:, column] + (1.0 - score) * log_q[:, column]
        density = density - density.max()
    return AbilityPosterior(posterior.points, density, posterior.n_responses + len(scores))


def summarize(posterior: AbilityPosterior) -> AbilityEstimate:
    """EAP ability (posterior mean) and its standard error (posterior SD), in logits."""
    w = posterior.weights()
    mean = float(w @ posterior.points)
    variance = float(w @ (posterior.points - mean) ** 2)
    return AbilityEstimate(mean, math.sqrt(max(variance, 0.0)))


def posterior_for(
    bank: ItemBank,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    prior: NormalPrior = NormalPrior(),
) -> AbilityPosterior:
    """Posterior on the prior's grid after answers ``scores`` (in [0, 1]) to ``items``."""
    index = np.asarray(items, dtype=np.intp).reshape(-1)
    score_arr = _check_scores(scores)
    if index.size != score_arr.size:
        raise ValueError(f"{index.size} items but {score_arr.size} scores")
    points, log_weights = quadrature(prior)
    if index.size == 0:
        return AbilityPosterior(points, log_weights, 0)
    log_p, log_q = log_p_q(points, bank.a[index], bank.b[index], bank.c[index])
    log_density = log_weights + log_p @ score_arr + log_q @ (1.0 - score_arr)
    return AbilityPosterior(points, log_density, int(index.size))


def estimate_eap(
    bank: ItemBank,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    prior: NormalPrior = NormalPrior(),
) -> AbilityEstimate:
    """EAP ability and posterior SD (logits) from all answers so far.

    ``items`` are indices into ``bank``; ``scores`` in [0, 1] (1 correct). Finite for
    every answer pattern; with no answers it returns the prior mean and sd (up to grid
    truncation). Cost O(len(items) × prior.n_points).
    """
    return summarize(posterior_for(bank, items, scores, prior))


def _fisher_scoring(
    bank: ItemBank,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    prior: NormalPrior | None,
    bounds: tuple[float, float],
    start: float,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> AbilityEstimate:
    index = np.asarray(items, dtype=np.intp).reshape(-1)
    u = _check_scores(scores)
    if index.size != u.size:
        raise ValueError(f"{index.size} items but {u.size} scores")
    a, b, c = bank.a[index], bank.b[index], bank.c[index]
    low, high = bounds
    theta = min(max(start, low), high)
    precision = 0.0 if prior is None else 1.0 / prior.sd**2
    information = precision
    for _ in range(max_iter):
        knows = expit(a * (theta - b))
        p = c + (1.0 - c) * knows
        knows_share = np.divide(knows, p, out=np.ones_like(p), where=p > 0)
        # d log L / dθ = Σ a (u - P) s / P ; expected information Σ a² (1 - c) s² (1 - s) / P.
        gradient = float(np.sum(a * (u - p) * knows_share))
        information = float(np.sum(a**2 * (1.0 - c) * knows * (1.0 - knows) * knows_share))
        if prior is not None:
            gradient -= (theta - prior.mean) * precision
            information += precision
        # A flat likelihood (no items, or all far away) moves one logit uphill per step.
        step = gradient / information if information > 1e-12 else math.copysign(1.0, gradient)
        new_theta = min(max(theta + max(-1.0, min(1.0, step)), low), high)
        converged = abs(new_theta - theta) < tol
        theta = new_theta
        if converged:
            break
    se = 1.0 / math.sqrt(information) if information > 0 else math.inf
    return AbilityEstimate(theta, se)


def estimate_map(
    bank: ItemBank,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    prior: NormalPrior = NormalPrior(),
    bounds: tuple[float, float] = ABILITY_BOUNDS,
) -> AbilityEstimate:
    """MAP ability (posterior mode, logits) by Fisher scoring, clipped to ``bounds``.

    The SE is ``1 / sqrt(test information + 1 / prior.sd²)`` at the estimate.
    """
    return _fisher_scoring(bank, items, scores, prior, bounds, start=prior.mean)


def estimate_ml(
    bank: ItemBank,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    bounds: tuple[float, float] = ABILITY_BOUNDS,
    start: float = 0.0,
) -> AbilityEstimate:
    """Maximum-likelihood ability (logits) by Fisher scoring, clipped to ``bounds``.

    An all-correct (all-wrong) pattern has no finite maximum: the estimate is the upper
    (lower) bound. The SE is ``1 / sqrt(test information)`` at the estimate (inf if 0).
    3PL likelihoods can have several local maxima; ``start`` picks the basin.
    """
    return _fisher_scoring(bank, items, scores, None, bounds, start=start)


# --- calibration --------------------------------------------------------------------


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

    # Start from the classical item statistics: intercept = logit of the proportion correct.
    p_value = (values.sum(axis=0) + 0.5) / (observed.sum(axis=0) + 1.0)
    guess_mode = (priors.guess_alpha - 1.0) / (priors.guess_alpha + priors.guess_beta - 2.0)
    params = np.stack(
        [
            np.zeros(n_items),
            np.log(p_value / (1.0 - p_value)),
            np.full(n_items, np.log(guess_mode / (1.0 - guess_mode))),
        ]
    )

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


def simulate_responses(
    bank: ItemBank, ability: npt.ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Simulated 0/1 answers (learners × items) of learners with ``ability`` (logits)."""
    p = bank_p_correct(bank, np.asarray(ability, dtype=np.float64).reshape(-1))
    return np.asarray(rng.random(p.shape) < p, dtype=np.float64)


__all__ = [
    "ABILITY_BOUNDS",
    "AbilityEstimate",
    "AbilityPosterior",
    "Calibration",
    "CalibrationPriors",
    "ItemBank",
    "NormalPrior",
    "add_likelihoods_shifted",
    "bank_information",
    "bank_p_correct",
    "calibrate",
    "estimate_eap",
    "estimate_map",
    "estimate_ml",
    "initial_posterior",
    "item_information",
    "log_p_q",
    "p_correct",
    "posterior_for",
    "quadrature",
    "simulate_responses",
    "summarize",
    "total_information",
    "update_posterior",
    "update_posterior_shifted",
]
