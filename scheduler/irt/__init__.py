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

Modules: :mod:`~scheduler.irt.model` (item banks, response model, information),
:mod:`~scheduler.irt.ability` (EAP/MAP/ML ability), :mod:`~scheduler.irt.calibration`
(MML-EM item calibration). Every public name is importable from ``scheduler.irt``.
"""

from __future__ import annotations

from scheduler.irt.ability import (
    AbilityEstimate,
    AbilityPosterior,
    NormalPrior,
    add_likelihoods_shifted,
    estimate_eap,
    estimate_map,
    estimate_ml,
    initial_posterior,
    posterior_for,
    quadrature,
    summarize,
    update_posterior,
    update_posterior_shifted,
)
from scheduler.irt.calibration import Calibration, CalibrationPriors, calibrate
from scheduler.irt.model import (
    ABILITY_BOUNDS,
    FloatArray,
    IndexArray,
    ItemBank,
    Model,
    bank_information,
    bank_p_correct,
    item_information,
    log_p_q,
    p_correct,
    simulate_responses,
    total_information,
)

__all__ = [
    "ABILITY_BOUNDS",
    "AbilityEstimate",
    "AbilityPosterior",
    "Calibration",
    "CalibrationPriors",
    "FloatArray",
    "IndexArray",
    "ItemBank",
    "Model",
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
