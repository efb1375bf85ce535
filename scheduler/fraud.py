"""Fraud and cheating signals: pure scoring of attempts and sessions.

Every signal is a :class:`FraudEvidence` with a weight in [0, 1] and a readable
detail; :func:`combine` turns the evidence of one attempt or session into a score in
[0, 1] by noisy-OR (``1 - Π(1 - w)``: independent pieces of evidence reinforce each
other, and no single weak one reaches an alert on its own). The stream adapter that
keeps the state these functions read is :mod:`processors.fraud`; the false-positive
figures on real logs come from ``bench/fraud_false_positives.py``.

The signals:

* **Rapid response** (:func:`rapid_response`): the response time is below
  ``rapid_ratio`` of the item's median. The median comes from a log-spaced response
  time histogram per item (:func:`add_response_time`, :func:`histogram_quantile`);
  cold start: an item with fewer than ``reference_min_answers`` answers uses its
  skill's histogram, and with neither only answers faster than ``rapid_floor_ms``
  (too fast to read any item) count. The weight stays below the alert threshold
  (one answer known in advance proves little); a rapid *wrong* answer is mostly
  disengaged guessing, not cheating, so its weight is scaled by ``rapid_wrong_factor``.
* **Person misfit** (:func:`lz_star`, :func:`person_misfit`): Snijders' (2001)
  lz* on the learner's last ``misfit_window`` answers, with the ability estimated by
  MAP under a N(0, 1) prior (lz* corrects lz for the estimated ability). Item
  parameters are used when calibrated; otherwise a Rasch proxy from the item's (or
  skill's) observed correct rate, :func:`difficulty_proxy`. Strongly negative lz*
  (right on hard items, wrong on easy ones) is the cheating pattern.
* **Collusion** (:func:`collusion`): other learners of the same class (or shared
  session) gave the *same wrong answer* to the same item within a time window, and
  that answer is uncommon among the item's wrong answers outside the group
  (:func:`is_uncommon`).
* **Impossible velocity** (:func:`velocity`): more than ``velocity_max_answers``
  answers within ``velocity_window_s`` seconds.
* **Shared device** (:func:`shared_device`): more than ``device_max_accounts``
  accounts used one device within ``device_window_s`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from scheduler.irt import ItemBank, NormalPrior, estimate_map

FloatArray = npt.NDArray[np.float64]


class FraudSignalKind(StrEnum):
    """The kinds of evidence (same names as derived.proto's FraudSignal)."""

    RAPID_RESPONSE = "rapid_response"
    PERSON_MISFIT = "person_misfit"
    COLLUSION = "collusion"
    IMPOSSIBLE_VELOCITY = "impossible_velocity"
    SHARED_DEVICE = "shared_device"


@dataclass(frozen=True, slots=True)
class FraudEvidence:
    """One signal's contribution: ``weight`` in (0, 1], ``detail`` for a human."""

    signal: FraudSignalKind
    weight: float
    detail: str


@dataclass(frozen=True, slots=True)
class FraudConfig:
    """Thresholds of every signal (times in ms or s as named, probabilities in [0, 1])."""

    # Rapid response.
    reference_min_answers: int = 20  # answers before an item's (or skill's) median is used
    # Rapid: response time below this fraction of the median. At 0.2 it fired on 7 % of
    # the ASSISTments answers and 4.5 % of the Cognitive Tutor steps (mostly fast
    # guesses and easy items); at 0.1 on 2.1 % and 0.6 % (bench/fraud_false_positives.py).
    rapid_ratio: float = 0.1
    rapid_floor_ms: int = 400  # cold start: faster than this is rapid whatever the item
    rapid_wrong_factor: float = 0.5  # a rapid wrong answer weighs this much of a right one
    rapid_min_weight: float = 0.4  # weight just under rapid_ratio (and for the cold-start floor)
    rapid_max_weight: float = 0.75  # weight of an instant answer: alone, below a 0.8 alert
    histogram_cap: float = 5_000.0  # counts are halved when they reach this (a rolling store)
    # Person misfit.
    misfit_window: int = 30  # the learner's last answers the statistic looks at
    misfit_min_answers: int = 10  # fewer: no verdict
    # lz* below this; -3 is one-sided 0.13 % under the model. Practice data breaks the
    # model's fixed ability (learners learn), so -2.33 (1 %) fired on 1.9 % / 4.6 % of
    # honest answers; -3 on 0.4 % / 1.9 % (bench/fraud_false_positives.py).
    misfit_threshold: float = -3.0
    misfit_max_weight: float = 0.6  # misfit alone never reaches a 0.8 alert
    # Collusion.
    collusion_window_s: float = 600.0
    uncommon_share: float = 0.1  # at most this share of the item's other wrong answers
    uncommon_min_wrong: int = 10  # wrong answers outside the group before "uncommon" is judged
    # Velocity.
    velocity_window_s: float = 60.0
    velocity_max_answers: int = 20  # sustained one answer per 3 s
    # Shared device.
    device_window_s: float = 3600.0
    device_max_accounts: int = 3

    def __post_init__(self) -> None:
        shares = (
            "rapid_ratio",
            "rapid_wrong_factor",
            "rapid_min_weight",
            "rapid_max_weight",
            "misfit_max_weight",
            "uncommon_share",
        )
        for name in shares:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"fraud {name} must be in (0, 1], got {value}")
        counts = (
            "reference_min_answers",
            "misfit_window",
            "misfit_min_answers",
            "velocity_max_answers",
            "device_max_accounts",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"fraud {name} must be >= 1")
        if self.rapid_min_weight > self.rapid_max_weight:
            raise ValueError("rapid_min_weight cannot exceed rapid_max_weight")
        if self.misfit_min_answers > self.misfit_window:
            raise ValueError("misfit_min_answers cannot exceed misfit_window")

    @property
    def history_size(self) -> int:
        """Recent answers kept per learner: enough for misfit and to saturate velocity."""
        return max(self.misfit_window, 2 * self.velocity_max_answers + 1)


DEFAULT_FRAUD_CONFIG = FraudConfig()


def combine(evidence: Sequence[FraudEvidence]) -> float:
    """Score in [0, 1] by noisy-OR of the weights: 0 for no evidence."""
    keep = 1.0
    for item in evidence:
        keep *= 1.0 - min(max(item.weight, 0.0), 1.0)
    return 1.0 - keep


# --- response-time histograms -------------------------------------------------------

# Log-spaced bins from 100 ms to 1 h: 60 bins of x1.19 each; bin 0 and the last bin
# also hold everything below and above.
HISTOGRAM_BINS = 60
_LOG_LOW = math.log(100.0)
_LOG_HIGH = math.log(3_600_000.0)
_LOG_STEP = (_LOG_HIGH - _LOG_LOW) / HISTOGRAM_BINS


def response_time_bin(response_time_ms: float) -> int:
    """The histogram bin of a response time in ms (> 0)."""
    position = (math.log(max(response_time_ms, 1.0)) - _LOG_LOW) / _LOG_STEP
    return min(max(int(position), 0), HISTOGRAM_BINS - 1)


def empty_histogram() -> tuple[float, ...]:
    """A response-time histogram with no answers."""
    return (0.0,) * HISTOGRAM_BINS


def add_response_time(
    counts: Sequence[float],
    response_time_ms: float,
    cap: float = DEFAULT_FRAUD_CONFIG.histogram_cap,
) -> tuple[float, ...]:
    """``counts`` with one more answer of ``response_time_ms`` (> 0).

    When the total reaches ``cap`` every count is halved first, so old answers fade
    (a rolling store of bounded weight, with no per-answer history).
    """
    if len(counts) != HISTOGRAM_BINS:
        raise ValueError(f"a histogram has {HISTOGRAM_BINS} bins, got {len(counts)}")
    values = list(counts)
    if sum(values) >= cap:
        values = [v / 2.0 for v in values]
    values[response_time_bin(response_time_ms)] += 1.0
    return tuple(values)


def histogram_quantile(counts: Sequence[float], q: float) -> float:
    """The ``q``-quantile (q in [0, 1]) of a response-time histogram, in ms.

    Log-linear interpolation inside the bin; NaN for an empty histogram.
    """
    total = float(sum(counts))
    if total <= 0:
        return math.nan
    target = min(max(q, 0.0), 1.0) * total
    running = 0.0
    for index, count in enumerate(counts):
        if count > 0 and running + count >= target:
            share = (target - running) / count
            return math.exp(_LOG_LOW + (index + share) * _LOG_STEP)
        running += count
    return math.exp(_LOG_HIGH)


@dataclass(frozen=True, slots=True)
class ResponseReference:
    """Rolling statistics of one item or skill: response-time histogram and correct rate."""

    rt_counts: tuple[float, ...]  # histogram weights (fractional after halving)
    answers: int  # answers counted (not halved)
    correct: int  # correct answers among them

    @property
    def rt_total(self) -> float:
        return float(sum(self.rt_counts))


EMPTY_REFERENCE = ResponseReference(empty_histogram(), 0, 0)


def observe(
    reference: ResponseReference,
    *,
    response_time_ms: int,
    correct: bool,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> ResponseReference:
    """``reference`` after one more answer; a response time <= 0 (not reported) is not added."""
    counts = reference.rt_counts
    if response_time_ms > 0:
        counts = add_response_time(counts, response_time_ms, config.histogram_cap)
    return ResponseReference(counts, reference.answers + 1, reference.correct + int(correct))


def rapid_response(
    *,
    response_time_ms: int,
    correct: bool,
    item: ResponseReference,
    skill: ResponseReference | None,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> FraudEvidence | None:
    """Evidence that an answer came much faster than the item's typical time, or None.

    ``response_time_ms`` <= 0 means "not reported" (proto3's default) and gives None.
    ``item`` and ``skill`` are the references *before* this answer.
    """
    if response_time_ms <= 0:
        return None
    scope, reference = "item", item
    if reference.rt_total < config.reference_min_answers:
        scope, reference = "skill", skill or EMPTY_REFERENCE
    if reference.rt_total >= config.reference_min_answers:
        median = histogram_quantile(reference.rt_counts, 0.5)
        ratio = response_time_ms / median
        if ratio >= config.rapid_ratio:
            return None
        speed = 1.0 - ratio / config.rapid_ratio
        weight = (
            config.rapid_min_weight + (config.rapid_max_weight - config.rapid_min_weight) * speed
        )
        detail = f"{response_time_ms} ms vs {scope} median {median:.0f} ms"
    elif response_time_ms < config.rapid_floor_ms:
        weight = config.rapid_min_weight
        detail = f"{response_time_ms} ms, under the {config.rapid_floor_ms} ms floor (cold start)"
    else:
        return None
    if not correct:
        weight *= config.rapid_wrong_factor
        detail += ", wrong answer"
    return FraudEvidence(FraudSignalKind.RAPID_RESPONSE, weight, detail)


# --- person fit ---------------------------------------------------------------------

# The ability prior of the person-fit estimate: the calibration population's N(0, 1).
STANDARD_PRIOR = NormalPrior()
# sqrt(1 + pi/8): the probit approximation of a logistic averaged over N(0, 1) ability.
_MARGINAL_SCALE = math.sqrt(1.0 + math.pi / 8.0)


def difficulty_proxy(
    item: ResponseReference, skill: ResponseReference | None, *, prior_answers: float = 5.0
) -> float:
    """A Rasch difficulty (logits) from an item's observed correct rate, for uncalibrated items.

    The rate is shrunk toward the skill's rate (itself shrunk toward 0.7, the typical
    practice rate) by ``prior_answers`` pseudo-answers, then inverted through the
    marginal of a 1PL item over N(0, 1) abilities: ``b = -logit(rate) · sqrt(1 + π/8)``.
    """
    skill_rate = 0.7
    if skill is not None and skill.answers > 0:
        skill_rate = (skill.correct + prior_answers * 0.7) / (skill.answers + prior_answers)
    rate = (item.correct + prior_answers * skill_rate) / (item.answers + prior_answers)
    rate = min(max(rate, 0.02), 0.98)
    return -math.log(rate / (1.0 - rate)) * _MARGINAL_SCALE


@dataclass(frozen=True, slots=True)
class PersonFit:
    """lz* and the MAP ability (logits) it was computed at."""

    lz_star: float
    ability: float


def lz_star(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    c: npt.ArrayLike,
    scores: npt.ArrayLike,
    prior: NormalPrior = STANDARD_PRIOR,
) -> PersonFit:
    """Snijders' lz* person-fit statistic of 0/1 ``scores`` on items ``(a, b, c)``.

    Asymptotically N(0, 1) for a learner who answers as the IRT model says, even though
    the ability is estimated (MAP under ``prior``) from the same answers; negative values
    mean an aberrant pattern. NaN when the pattern carries no information (no items, or
    every item's P(correct) at 0 or 1).

    With ``P_i`` at the estimate, ``W_i = log(P_i / Q_i)``, ``P'_i`` the slope and
    ``r_i = P'_i / (P_i Q_i)``: ``c_n = Σ P'_i W_i / Σ P'_i r_i``, ``W*_i = W_i - c_n r_i``,
    ``r_0 = -(θ - μ) / σ²`` (the prior's score), and
    ``lz* = (Σ (u_i - P_i) W_i + c_n r_0) / sqrt(Σ W*_i² P_i Q_i)``.
    """
    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    c_arr = np.asarray(c, dtype=np.float64).reshape(-1)
    u = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not a_arr.size == b_arr.size == c_arr.size == u.size:
        raise ValueError("a, b, c and scores must have one length")
    if u.size == 0:
        return PersonFit(math.nan, prior.mean)
    bank = ItemBank(a_arr, b_arr, c_arr)
    theta = estimate_map(bank, np.arange(u.size), u, prior).ability
    knows = 1.0 / (1.0 + np.exp(-a_arr * (theta - b_arr)))
    p = np.clip(c_arr + (1.0 - c_arr) * knows, 1e-9, 1.0 - 1e-9)
    q = 1.0 - p
    slope = a_arr * (1.0 - c_arr) * knows * (1.0 - knows)
    w = np.log(p / q)
    r = slope / (p * q)
    denominator_c = float(np.sum(slope * r))
    c_n = float(np.sum(slope * w)) / denominator_c if denominator_c > 0 else 0.0
    w_star = w - c_n * r
    variance = float(np.sum(w_star**2 * p * q))
    if not variance > 1e-12:
        return PersonFit(math.nan, theta)
    r_0 = -(theta - prior.mean) / prior.sd**2
    numerator = float(np.sum((u - p) * w)) + c_n * r_0
    return PersonFit(numerator / math.sqrt(variance), theta)


def person_misfit(
    a: Sequence[float],
    b: Sequence[float],
    c: Sequence[float],
    scores: Sequence[float],
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> FraudEvidence | None:
    """Evidence of an aberrant answer pattern over the last answers, or None.

    Uses the last ``misfit_window`` answers (the sequences are oldest first) and needs
    ``misfit_min_answers`` of them. Scores are rounded to 0/1 (partial credit >= 0.5
    counts as right). The weight is half of ``misfit_max_weight`` at the threshold,
    the whole of it one unit of lz* further down.
    """
    window = slice(-config.misfit_window, None)
    u = [1.0 if s >= 0.5 else 0.0 for s in scores[window]]
    if len(u) < config.misfit_min_answers:
        return None
    fit = lz_star(a[window], b[window], c[window], u)
    if not fit.lz_star < config.misfit_threshold:  # also None for NaN
        return None
    depth = min(config.misfit_threshold - fit.lz_star, 1.0)
    weight = config.misfit_max_weight * (0.5 + 0.5 * depth)
    detail = f"lz* {fit.lz_star:.2f} over the last {len(u)} answers (ability {fit.ability:.2f})"
    return FraudEvidence(FraudSignalKind.PERSON_MISFIT, weight, detail)


# --- collusion ------------------------------------------------------------------------


def normalize_response(response: str) -> str | None:
    """The answer as compared between learners: lower case, no white space; None if empty.

    ``"X = 7"`` and ``"x=7"`` are one answer; two texts that differ only in spacing are
    as telling as identical ones.
    """
    normalized = "".join(response.split()).casefold()
    return normalized or None


def is_uncommon(
    answer_count: int,
    wrong_total: int,
    group_matches: int,
    config: FraudConfig = DEFAULT_FRAUD_CONFIG,
) -> bool:
    """Whether a wrong answer is rare enough that sharing it is suspicious.

    ``answer_count`` is how often this exact wrong answer was given to the item,
    ``wrong_total`` how many wrong answers the item got (both before this attempt),
    ``group_matches`` how many of those came from the matching learners themselves:
    they are left out, since colluders make their own answer look common. Without
    ``uncommon_min_wrong`` other wrong answers there is no verdict (False).
    """
    others_total = wrong_total - group_matches
    if others_total < config.uncommon_min_wrong:
        return False
    others_count = max(answer_count - group_matches, 0)
    return others_count / others_total <= config.uncommon_share


def collusion(
    partners: int, response: str, config: FraudConfig = DEFAULT_FRAUD_CONFIG
) -> FraudEvidence | None:
    """Evidence from ``partners`` other learners sharing the same uncommon wrong answer.

    The weight is ``1 - 0.5^partners`` (one partner 0.5, two 0.75, ...): one shared
    answer can be a coincidence, several learners sharing it rarely are.
    """
    if partners <= 0:
        return None
    weight = 1.0 - 0.5**partners
    window_min = config.collusion_window_s / 60
    detail = (
        f"same uncommon wrong answer {response[:40]!r} as {partners} other learner(s) "
        f"of the group within {window_min:.0f} min"
    )
    return FraudEvidence(FraudSignalKind.COLLUSION, weight, detail)


# --- velocity and devices ---------------------------------------------------------------


def answers_in_window(times_s: Sequence[float], now_s: float, window_s: float) -> int:
    """How many of ``times_s`` (epoch seconds) fall in ``(now_s - window_s, now_s]``."""
    return sum(1 for t in times_s if now_s - window_s < t <= now_s)


def velocity(
    times_s: Sequence[float], now_s: float, config: FraudConfig = DEFAULT_FRAUD_CONFIG
) -> FraudEvidence | None:
    """Evidence of more answers per window than a person gives, or None.

    ``times_s`` are the learner's recent answer times (epoch s), this answer included.
    The weight is 0.5 just over the limit and 1 at twice the limit.
    """
    count = answers_in_window(times_s, now_s, config.velocity_window_s)
    limit = config.velocity_max_answers
    if count <= limit:
        return None
    weight = min(1.0, 0.5 + 0.5 * (count - limit) / limit)
    detail = f"{count} answers in {config.velocity_window_s:.0f} s (limit {limit})"
    return FraudEvidence(FraudSignalKind.IMPOSSIBLE_VELOCITY, weight, detail)


def shared_device(
    accounts: int, config: FraudConfig = DEFAULT_FRAUD_CONFIG
) -> FraudEvidence | None:
    """Evidence from ``accounts`` distinct accounts on one device within the window.

    The weight is 0.5 just over ``device_max_accounts`` and 1 at twice it. School labs
    share devices legitimately; a tenant with labs raises the limit.
    """
    limit = config.device_max_accounts
    if accounts <= limit:
        return None
    weight = min(1.0, 0.5 + 0.5 * (accounts - limit) / limit)
    window_h = config.device_window_s / 3600
    detail = f"{accounts} accounts on this device within {window_h:g} h (limit {limit})"
    return FraudEvidence(FraudSignalKind.SHARED_DEVICE, weight, detail)
