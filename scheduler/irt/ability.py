"""Ability estimation from answers to calibrated items (logits).

Three ability estimators, each returning an :class:`AbilityEstimate`:

* EAP (expected a posteriori) on a fixed quadrature grid with a normal prior; the
  standard error is the posterior standard deviation. It is finite for every answer
  pattern (all right, all wrong), so it is the default for placement and streams.
  :func:`update_posterior` adds one answer in O(grid) for a stream processor that keeps
  the posterior; :func:`estimate_eap` recomputes it from the answers so far.
* MAP and ML by Fisher scoring, bounded to an ability interval; the standard error is
  ``1 / sqrt(information)`` at the estimate (plus the prior precision for MAP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logsumexp

from scheduler.irt.model import ABILITY_BOUNDS, FloatArray, ItemBank, log_p_q


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
