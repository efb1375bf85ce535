"""Experiments: deterministic assignment and an analysis that stays valid under peeking.

Assignment. A learner's variant is a pure function of (experiment id, tenant, learner,
variant weights): SHA-256 of ``"<experiment_id>:<tenant_id>:<user_id>"`` gives a
uniform number in [0, 1), placed on the cumulative weights (:func:`assign_variant`).
The experiment id salts the hash, so two experiments split the same learners
independently; no table is read or written to know a learner's variant, and a replay
assigns the same.

Analysis. The unit is the learner (the unit of assignment); the outcome is binary (did
the exposed learner convert on the target metric). Every variant is compared with the
control (the first variant) by the **mixture sequential probability ratio test**
(mSPRT) of Johari, Koomen, Pekelis & Walsh, "Always Valid Inference: Continuous
Monitoring of A/B Tests", *Operations Research* 70(3):1806-1821, 2022 (first as
Johari, Pekelis & Walsh, "Always Valid Inference: Bringing Sequential Analysis to A/B
Testing", arXiv:1512.04922, 2015; KDD 2017 "Peeking at A/B Tests"). For the
difference of two proportions θ = p_B - p_A with estimate θ̂ and plug-in variance
V = p̂_A(1-p̂_A)/n_A + p̂_B(1-p̂_B)/n_B (the normal approximation of their section 4),
the likelihood ratio against H0: θ = 0, mixed over θ ~ N(0, τ²), is

    Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²))).

Λ is a nonnegative martingale under H0 (exactly for Gaussian data, approximately
for proportions), so by Ville's inequality P(Λ ever reaches 1/α) ≤ α: the
*always-valid p-value* ``p_n = min(p_{n-1}, 1/Λ_n)`` may be read after every batch,
and the experiment stopped the first time it is ≤ α, with the false-positive rate
still ≤ α. τ (the mixing standard deviation, in absolute rate) sets where the test
is most powerful: effects near τ are found fastest. The simulations in
tests/unit/scheduler/test_experiments.py measure both rates (docs/experiments.md).

Beside it, a descriptive Bayesian read-out: independent Beta(1, 1) priors on each
variant's rate, so the posteriors are Beta(1 + x, 1 + n - x); from Monte Carlo draws,
P(variant is best) and the expected loss E[max_j p_j - p_i] of choosing it
(Stucchio, "Bayesian A/B Testing at VWO", 2015). Decisions use the mSPRT only; the
posterior numbers say how large the difference probably is.

Pure: numpy and the standard library, no clock, randomness passed in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scheduler.exceptions import SchedulerError

DEFAULT_ALPHA = 0.05
DEFAULT_TAU = 0.05  # mixing SD, in absolute conversion rate (5 points)
POSTERIOR_DRAWS = 20_000
_SMALLEST_P = float(np.finfo(np.float64).tiny)


class ExperimentError(SchedulerError):
    """An experiment definition that cannot be run; the message names the field."""


class Verdict(StrEnum):
    """What the sequential test says about one variant against the control."""

    CONTROL = "control"  # the variant every other one is compared with
    TOO_FEW = "too_few"  # an arm is below the experiment's minimum sample
    INCONCLUSIVE = "inconclusive"  # no difference found (yet): keep collecting
    BETTER = "better"  # always-valid p ≤ α and the rate is higher than the control's
    WORSE = "worse"  # always-valid p ≤ α and the rate is lower


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm: its name, allocation weight (> 0, relative) and what it does (free text)."""

    name: str
    weight: float
    strategy: str


@dataclass(frozen=True, slots=True)
class RunningExperiment:
    """A running experiment as the processor applying it needs it: id and arms."""

    experiment_id: str  # UUID string
    variants: tuple[Variant, ...]  # the control first


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """Exposed learners ``n`` (≥ 0) and those who converted ``x`` (0 ≤ x ≤ n) in one arm."""

    variant: str
    n: int
    x: int


@dataclass(frozen=True, slots=True)
class ArmResult:
    """One arm's read-out; rates in [0, 1], ``p_value`` in (0, 1]."""

    variant: str
    n: int
    x: int
    rate: float
    lift: float  # rate - control rate (0 for the control)
    p_value: float  # always-valid p-value against the control (1 for the control)
    ci_low: float  # always-valid (1 - α) interval of the lift
    ci_high: float
    p_best: float  # posterior probability that this arm has the highest rate
    expected_loss: float  # posterior E[max_j p_j - p_this], in absolute rate
    verdict: Verdict


def variants_from_json(payload: str | Sequence[Mapping[str, Any]]) -> tuple[Variant, ...]:
    """Variants from their stored JSON (a list of {name, weight, strategy}), in order."""
    items = json.loads(payload) if isinstance(payload, str) else payload
    return tuple(Variant(str(v["name"]), float(v["weight"]), str(v["strategy"])) for v in items)


def validate_variants(variants: Sequence[Variant]) -> None:
    """Raise ExperimentError unless there are ≥ 2 uniquely named arms with weights > 0."""
    if len(variants) < 2:
        raise ExperimentError("variants: an experiment needs at least two variants")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError("variants: names must be unique")
    for v in variants:
        if not v.name:
            raise ExperimentError("variants: every variant needs a name")
        if not (math.isfinite(v.weight) and v.weight > 0):
            raise ExperimentError(f"variants: weight of {v.name!r} must be a number > 0")


def assignment_point(experiment_id: str, tenant_id: str, user_id: str) -> float:
    """The learner's uniform point in [0, 1) for this experiment (salted SHA-256)."""
    digest = hashlib.sha256(f"{experiment_id}:{tenant_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


def assign_variant(
    experiment_id: str, tenant_id: str, user_id: str, variants: Sequence[Variant]
) -> Variant:
    """The learner's variant: deterministic, with probability weight / sum of weights."""
    validate_variants(variants)
    point = assignment_point(experiment_id, tenant_id, user_id) * sum(v.weight for v in variants)
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if point < cumulative:
            return variant
    return variants[-1]  # float rounding at the very top of the range


def msprt_log_lr(
    n_a: ArrayLike, x_a: ArrayLike, n_b: ArrayLike, x_b: ArrayLike, tau: float = DEFAULT_TAU
) -> NDArray[np.float64]:
    """log Λ of the two-proportion mSPRT (module docstring); elementwise over arrays.

    0 (no evidence) where an arm is empty or the plug-in variance is 0 (all or none
    converted in both arms). ``tau`` > 0, in absolute rate.
    """
    n_a_ = np.asarray(n_a, dtype=np.float64)
    n_b_ = np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_a = np.asarray(x_a, dtype=np.float64) / n_a_
        p_b = np.asarray(x_b, dtype=np.float64) / n_b_
        variance = p_a * (1 - p_a) / n_a_ + p_b * (1 - p_b) / n_b_
        tau2 = tau * tau
        diff = p_b - p_a
        log_lr = 0.5 * np.log(variance / (variance + tau2)) + tau2 * diff * diff / (
            2 * variance * (variance + tau2)
        )
    usable = (n_a_ > 0) & (n_b_ > 0) & (variance > 0) & np.isfinite(log_lr)
    return np.where(usable, log_lr, 0.0)


def always_valid_p(
    n_a: ArrayLike,
    x_a: ArrayLike,
    n_b: ArrayLike,
    x_b: ArrayLike,
    tau: float = DEFAULT_TAU,
    previous: ArrayLike = 1.0,
) -> NDArray[np.float64]:
    """``min(previous, 1/Λ)``: the always-valid p-value after one more look, in (0, 1]."""
    log_lr = msprt_log_lr(n_a, x_a, n_b, x_b, tau)
    p = np.minimum(np.asarray(previous, dtype=np.float64), np.exp(-np.maximum(log_lr, 0.0)))
    return np.maximum(p, _SMALLEST_P)  # exp underflows to 0 for overwhelming evidence


def always_valid_interval(
    arm_a: ArmCounts, arm_b: ArmCounts, alpha: float, tau: float = DEFAULT_TAU
) -> tuple[float, float]:
    """The (1 - α) confidence sequence of p_B - p_A at this look: {θ : Λ(θ) < 1/α}.

    (-1, 1) when the variance is 0 or an arm is empty.
    """
    if arm_a.n == 0 or arm_b.n == 0:
        return (-1.0, 1.0)
    p_a, p_b = arm_a.x / arm_a.n, arm_b.x / arm_b.n
    variance = p_a * (1 - p_a) / arm_a.n + p_b * (1 - p_b) / arm_b.n
    if variance <= 0:
        return (-1.0, 1.0)
    tau2 = tau * tau
    half = math.sqrt(
        2
        * variance
        * (variance + tau2)
        / tau2
        * (math.log(1 / alpha) + 0.5 * math.log((variance + tau2) / variance))
    )
    diff = p_b - p_a
    return (max(-1.0, diff - half), min(1.0, diff + half))


def posterior_summary(
    arms: Sequence[ArmCounts], rng: np.random.Generator, draws: int = POSTERIOR_DRAWS
) -> tuple[list[float], list[float]]:
    """P(best) and expected loss per arm under Beta(1 + x, 1 + n - x) posteriors."""
    samples = np.stack([rng.beta(1 + a.x, 1 + a.n - a.x, size=draws) for a in arms])
    best = samples.max(axis=0)
    winners = np.bincount(samples.argmax(axis=0), minlength=len(arms)) / draws
    loss = (best[None, :] - samples).mean(axis=1)
    return [float(w) for w in winners], [float(v) for v in loss]


def analyse(
    arms: Sequence[ArmCounts],
    *,
    minimum_sample: int,
    alpha: float = DEFAULT_ALPHA,
    tau: float = DEFAULT_TAU,
    previous_p: Sequence[float] | None = None,
    rng: np.random.Generator | None = None,
) -> list[ArmResult]:
    """Read out ``arms`` (control first) at one look.

    ``previous_p``: each arm's always-valid p-value from the last look (1.0 before
    the first), so the p-value never rises again; ``minimum_sample`` (learners per
    arm, ≥ 0) holds back any BETTER/WORSE verdict until every compared arm has it;
    ``alpha`` in (0, 1). ``rng`` drives the posterior draws (default seed 0, so a
    read-out of the same counts is the same).
    """
    if len(arms) < 2:
        raise ExperimentError("variants: an experiment needs at least two variants")
    if not 0 < alpha < 1:
        raise ExperimentError("alpha must be in (0, 1)")
    for a in arms:
        if not 0 <= a.x <= a.n:
            raise ExperimentError(f"counts of {a.variant!r}: need 0 <= converted <= exposed")
    previous = list(previous_p) if previous_p is not None else [1.0] * len(arms)
    p_best, loss = posterior_summary(arms, rng or np.random.default_rng(0))
    control = arms[0]
    control_rate = control.x / control.n if control.n else 0.0
    results: list[ArmResult] = []
    for k, arm in enumerate(arms):
        rate = arm.x / arm.n if arm.n else 0.0
        if k == 0:
            results.append(
                ArmResult(
                    arm.variant, arm.n, arm.x, rate, 0.0, 1.0, 0.0, 0.0,
                    p_best[0], loss[0], Verdict.CONTROL,
                )
            )  # fmt: skip
            continue
        p = float(always_valid_p(control.n, control.x, arm.n, arm.x, tau, previous[k]))
        low, high = always_valid_interval(control, arm, alpha, tau)
        if min(control.n, arm.n) < minimum_sample:
            verdict = Verdict.TOO_FEW
        elif p <= alpha:
            verdict = Verdict.BETTER if rate > control_rate else Verdict.WORSE
        else:
            verdict = Verdict.INCONCLUSIVE
        results.append(
            ArmResult(
                arm.variant, arm.n, arm.x, rate, rate - control_rate, p, low, high,
                p_best[k], loss[k], verdict,
            )
        )  # fmt: skip
    return results
