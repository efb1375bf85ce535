"""The IRT response model: item banks, P(correct), item and test information.

The model is the logistic one on the logit metric (no 1.7 scaling constant, the same
metric as catsim)::

    P(correct | θ) = c + (1 - c) / (1 + exp(-a (θ - b)))

``θ`` is the learner's ability in logits (the calibration population is N(0, 1)),
``a > 0`` the item's discrimination, ``b`` its difficulty on the ability scale and
``c`` in [0, 1) its guessing floor. 1PL (Rasch) is ``a = 1, c = 0``; 2PL is ``c = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit

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


def simulate_responses(
    bank: ItemBank, ability: npt.ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Simulated 0/1 answers (learners × items) of learners with ``ability`` (logits)."""
    p = bank_p_correct(bank, np.asarray(ability, dtype=np.float64).reshape(-1))
    return np.asarray(rng.random(p.shape) < p, dtype=np.float64)
