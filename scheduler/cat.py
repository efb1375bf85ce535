"""Computerized adaptive placement: one item at a time, from a pure, serialisable state.

A placement session is a :class:`CatState` (the settings, the items given and the
answers), small and JSON-ready so the API can keep it in Redis between requests.
Three pure steps drive it::

    state = start(CatConfig(...))
    while (item := next_item(state, bank, rng)) is not None:
        state = record_answer(state, item, correct)
    placement = result(state, bank)

Selection is maximum Fisher information at the current EAP ability, with two standard
refinements:

* content balancing (Kingsbury & Zara, 1989): when ``skill_targets`` gives target shares
  per skill, the next item comes from the skill furthest below its share;
* exposure control by the randomesque method (Kingsbury & Zara, 1989): a uniform pick
  among the ``randomesque_k`` most informative eligible items, with the caller's rng.

The test stops (``next_item`` returns None) at ``max_items``; or, once ``min_items`` are
given, when the posterior SD of ability falls to ``se_target``; or when no eligible item
is left.

Per-skill starting mastery (for seeding BKT) is the posterior predictive probability of
answering that skill's *typical* item correctly: the item with the skill's median
``a``, ``b`` and ``c``, averaged over the ability posterior. It is in [0, 1], reflects the
skill's difficulty relative to the learner, and is pulled toward the middle while the
ability is still uncertain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.exceptions import PlacementError as PlacementError  # re-exported
from scheduler.irt import (
    AbilityPosterior,
    FloatArray,
    ItemBank,
    NormalPrior,
    bank_information,
    bank_p_correct,
    log_p_q,
    posterior_for,
    quadrature,
    summarize,
)

# Priors whose grid tables a CatBank keeps (each is 2 × grid × items floats).
MAX_CACHED_PRIORS = 4


class StopReason(StrEnum):
    """Why a placement test ended."""

    SE_REACHED = "se_reached"
    MAX_ITEMS = "max_items"
    BANK_EXHAUSTED = "bank_exhausted"


@dataclass(frozen=True, slots=True)
class CatConfig:
    """Settings of one placement test.

    ``se_target``: stop when the ability posterior SD (logits) is at or below it (> 0).
    ``min_items``/``max_items``: length bounds (0 ≤ min ≤ max, max ≥ 1).
    ``randomesque_k``: pick uniformly among the k most informative items (1 = pure
    maximum information). ``skill_targets``: (skill, share) pairs; shares are normalised
    to sum to 1; skills not listed are never given; empty means no content balancing.
    ``prior_mean``/``prior_sd``: the normal ability prior (logits).
    """

    se_target: float = 0.3
    min_items: int = 5
    max_items: int = 30
    randomesque_k: int = 5
    skill_targets: tuple[tuple[str, float], ...] = ()
    prior_mean: float = 0.0
    prior_sd: float = 1.0

    def __post_init__(self) -> None:
        if not self.se_target > 0:
            raise PlacementError(f"se_target must be > 0, got {self.se_target}")
        if not 0 <= self.min_items <= self.max_items or self.max_items < 1:
            raise PlacementError(
                f"need 0 <= min_items <= max_items and max_items >= 1, "
                f"got {self.min_items}, {self.max_items}"
            )
        if self.randomesque_k < 1:
            raise PlacementError(f"randomesque_k must be >= 1, got {self.randomesque_k}")
        targets = tuple((str(skill), float(share)) for skill, share in self.skill_targets)
        if any(share < 0 for _, share in targets) or len({s for s, _ in targets}) != len(targets):
            raise PlacementError("skill_targets need distinct skills and shares >= 0")
        total = sum(share for _, share in targets)
        if targets and total <= 0:
            raise PlacementError("skill_targets need a positive total share")
        # Shares that already sum to 1 are kept as they are, so a config read back from its
        # stored form compares equal (dividing again would change the last bit).
        scale = 1.0 if abs(total - 1.0) <= 1e-9 else total
        normalised = tuple(sorted((skill, share / scale) for skill, share in targets))
        object.__setattr__(self, "skill_targets", normalised)
        # Validates the prior too (sd > 0, finite).
        NormalPrior(self.prior_mean, self.prior_sd)

    @classmethod
    def with_targets(cls, skill_targets: Mapping[str, float], **settings: Any) -> CatConfig:
        """Build a config from a ``{skill: share}`` mapping plus any other field."""
        return cls(skill_targets=tuple(skill_targets.items()), **settings)

    @property
    def prior(self) -> NormalPrior:
        """The ability prior and its quadrature grid."""
        return NormalPrior(self.prior_mean, self.prior_sd)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (skill targets as an object)."""
        return {
            "se_target": self.se_target,
            "min_items": self.min_items,
            "max_items": self.max_items,
            "randomesque_k": self.randomesque_k,
            "skill_targets": dict(self.skill_targets),
            "prior_mean": self.prior_mean,
            "prior_sd": self.prior_sd,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CatConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults."""
        settings = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
        settings["skill_targets"] = tuple(dict(raw.get("skill_targets", {})).items())
        return cls(**settings)


@dataclass(frozen=True, eq=False)
class CatBank:
    """The calibrated items a placement test draws from, with each item's skill.

    ``item_skills[i]`` names the skill of item ``i``. Derived on construction: ``skills``
    (sorted distinct names), ``skill_index`` (each item's position in ``skills``) and
    ``typical_items`` (one item per skill with the skill's median a, b and c).
    """

    items: ItemBank
    item_skills: tuple[str, ...]
    skills: tuple[str, ...] = field(init=False)
    skill_index: npt.NDArray[np.intp] = field(init=False)
    typical_items: ItemBank = field(init=False)
    # log P(correct) and log P(wrong) of every item on a few priors' grids, filled on first
    # use: a session's posterior is then a column gather and two mat-vecs.
    _grid_tables: dict[NormalPrior, tuple[FloatArray, FloatArray]] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        item_skills = tuple(str(skill) for skill in self.item_skills)
        if len(item_skills) != self.items.n_items:
            raise ValueError(f"{len(item_skills)} skills for {self.items.n_items} items")
        skills, skill_index = np.unique(np.asarray(item_skills, dtype=object), return_inverse=True)
        skill_index = np.asarray(skill_index, dtype=np.intp)
        skill_index.setflags(write=False)
        typical = [
            np.array([np.median(param[skill_index == s]) for s in range(len(skills))])
            for param in (self.items.a, self.items.b, self.items.c)
        ]
        object.__setattr__(self, "item_skills", item_skills)
        object.__setattr__(self, "skills", tuple(str(skill) for skill in skills))
        object.__setattr__(self, "skill_index", skill_index)
        object.__setattr__(self, "typical_items", ItemBank(*typical))

    @property
    def n_items(self) -> int:
        """Number of items in the bank."""
        return self.items.n_items

    def grid_log_likelihood(self, prior: NormalPrior) -> tuple[FloatArray, FloatArray] | None:
        """(log P(correct), log P(wrong)) of every item at each grid point of ``prior``.

        Shapes (prior.n_points, n_items), read-only, computed once per prior. Only the
        first ``MAX_CACHED_PRIORS`` priors are kept (sessions with per-learner priors
        would otherwise grow the cache without bound); for others it returns None.
        """
        tables = self._grid_tables.get(prior)
        if tables is None and len(self._grid_tables) < MAX_CACHED_PRIORS:
            points, _ = quadrature(prior)
            log_p, log_q = log_p_q(points, self.items.a, self.items.b, self.items.c)
            log_p.setflags(write=False)
            log_q.setflags(write=False)
            tables = self._grid_tables.setdefault(prior, (log_p, log_q))
        return tables


@dataclass(frozen=True, slots=True)
class CatState:
    """One placement session so far: its config, items given (in order) and answers.

    Immutable; every step returns a new state. ``to_dict``/``from_dict`` give a JSON-ready
    form for storage between requests.
    """

    config: CatConfig = CatConfig()
    items: tuple[int, ...] = ()
    responses: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.items) != len(self.responses):
            raise PlacementError(f"{len(self.items)} items but {len(self.responses)} responses")
        if any(item < 0 for item in self.items):
            raise PlacementError("item indices must be >= 0")
        if len(set(self.items)) != len(self.items):
            raise PlacementError("an item appears twice in a placement session")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"config": {...}, "items": [...], "responses": [...]}``."""
        return {
            "config": self.config.to_dict(),
            "items": list(self.items),
            "responses": list(self.responses),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CatState:
        """Inverse of :meth:`to_dict`; PlacementError names what does not parse."""
        try:
            return cls(
                config=CatConfig.from_dict(raw.get("config", {})),
                items=tuple(int(item) for item in raw.get("items", ())),
                responses=tuple(bool(answer) for answer in raw.get("responses", ())),
            )
        except PlacementError:
            raise
        except (TypeError, ValueError, AttributeError) as error:
            raise PlacementError(f"stored placement session does not parse: {error}") from error


@dataclass(frozen=True, slots=True)
class CatResult:
    """Outcome of a placement test (or of one in progress, then ``stop_reason`` is None).

    ``ability``/``ability_se``: EAP and posterior SD (logits). ``skill_mastery``: per skill
    of the bank, P(correct) in [0, 1] on the skill's typical item (see the module notes).
    """

    ability: float
    ability_se: float
    items: tuple[int, ...]
    responses: tuple[bool, ...]
    skill_mastery: Mapping[str, float]
    stop_reason: StopReason | None

    @property
    def n_items(self) -> int:
        """Number of items administered."""
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ability": self.ability,
            "ability_se": self.ability_se,
            "items": list(self.items),
            "responses": list(self.responses),
            "skill_mastery": dict(self.skill_mastery),
            "stop_reason": None if self.stop_reason is None else self.stop_reason.value,
        }


def start(config: CatConfig = CatConfig()) -> CatState:
    """A fresh placement session with ``config``."""
    return CatState(config=config)


def record_answer(state: CatState, item: int, correct: bool) -> CatState:
    """The state after the learner answered ``item`` (an index into the bank).

    Raises PlacementError for an item already given. The bank bounds are checked by
    :func:`next_item` and :func:`result`, which see the bank.
    """
    if item < 0:
        raise PlacementError(f"item index must be >= 0, got {item}")
    if item in state.items:
        raise PlacementError(f"item {item} was already given in this session")
    return CatState(state.config, (*state.items, int(item)), (*state.responses, bool(correct)))


def _posterior(state: CatState, bank: CatBank) -> AbilityPosterior:
    if state.items and max(state.items) >= bank.n_items:
        raise PlacementError(f"item {max(state.items)} is not in a bank of {bank.n_items} items")
    prior = state.config.prior
    points, log_weights = quadrature(prior)
    if not state.items:
        return AbilityPosterior(points, log_weights, 0)
    index = list(state.items)
    correct = np.asarray(state.responses, dtype=np.float64)
    tables = bank.grid_log_likelihood(prior)
    if tables is None:
        return posterior_for(bank.items, index, correct, prior)
    log_p, log_q = tables
    log_density = log_weights + log_p[:, index] @ correct + log_q[:, index] @ (1.0 - correct)
    return AbilityPosterior(points, log_density, len(index))


def _eligible(state: CatState, bank: CatBank) -> npt.NDArray[np.bool_]:
    """Items that may come next: not yet given and, with balancing, of the neediest skill."""
    eligible = np.ones(bank.n_items, dtype=bool)
    eligible[list(state.items)] = False
    targets = state.config.skill_targets
    if not targets:
        return eligible
    given_per_skill = np.bincount(
        bank.skill_index[list(state.items)], minlength=len(bank.skills)
    ).astype(np.float64)
    remaining_per_skill = np.bincount(bank.skill_index[eligible], minlength=len(bank.skills))
    position = {skill: s for s, skill in enumerate(bank.skills)}
    best_skill, best_deficit = -1, -np.inf
    n_next = len(state.items) + 1
    for skill, share in targets:  # sorted by name, so ties resolve the same way every time
        s = position.get(skill)
        if s is None or share <= 0 or remaining_per_skill[s] == 0:
            continue
        # Items this skill would be short of its share after one more item elsewhere.
        deficit = share * n_next - given_per_skill[s]
        if deficit > best_deficit:
            best_skill, best_deficit = s, deficit
    if best_skill < 0:
        return np.zeros(bank.n_items, dtype=bool)
    return np.asarray(eligible & (bank.skill_index == best_skill), dtype=bool)


def _stop_reason(
    state: CatState, eligible: npt.NDArray[np.bool_], ability_se: float
) -> StopReason | None:
    n_given = len(state.items)
    if n_given >= state.config.max_items:
        return StopReason.MAX_ITEMS
    if n_given >= state.config.min_items and n_given > 0 and ability_se <= state.config.se_target:
        return StopReason.SE_REACHED
    if not eligible.any():
        return StopReason.BANK_EXHAUSTED
    return None


def stop_reason(state: CatState, bank: CatBank) -> StopReason | None:
    """Why the test is over, or None while it should go on."""
    estimate = summarize(_posterior(state, bank))
    return _stop_reason(state, _eligible(state, bank), estimate.ability_se)


def next_item(state: CatState, bank: CatBank, rng: np.random.Generator) -> int | None:
    """Index of the next item to give, or None when a stopping rule is met.

    Maximum information at the EAP ability among eligible items (never one already
    given), picked uniformly from the ``randomesque_k`` best with ``rng``; ``rng`` is not
    drawn from when k = 1. Cost O(answers × grid + bank size).
    """
    estimate = summarize(_posterior(state, bank))
    eligible = _eligible(state, bank)
    if _stop_reason(state, eligible, estimate.ability_se) is not None:
        return None
    information = np.where(eligible, bank_information(bank.items, estimate.ability), -np.inf)
    k = min(state.config.randomesque_k, int(eligible.sum()))
    if k == 1:
        return int(np.argmax(information))
    best = np.argpartition(-information, k - 1)[:k]
    best = best[np.argsort(-information[best], kind="stable")]  # rng picks by rank, not memory
    return int(best[rng.integers(k)])


def result(state: CatState, bank: CatBank) -> CatResult:
    """Ability, SE, items given and per-skill starting mastery of the session so far."""
    posterior = _posterior(state, bank)
    estimate = summarize(posterior)
    # Posterior predictive P(correct) on each skill's typical item.
    mastery: FloatArray = posterior.weights() @ bank_p_correct(bank.typical_items, posterior.points)
    return CatResult(
        ability=estimate.ability,
        ability_se=estimate.ability_se,
        items=state.items,
        responses=state.responses,
        skill_mastery=dict(zip(bank.skills, (float(m) for m in mastery), strict=True)),
        stop_reason=_stop_reason(state, _eligible(state, bank), estimate.ability_se),
    )


def placement_mastery(ability: float, bank: CatBank) -> dict[str, float]:
    """P(correct) in [0, 1] on each skill's typical item at a known ability (logits)."""
    p = bank_p_correct(bank.typical_items, np.asarray(ability, dtype=np.float64))
    return dict(zip(bank.skills, (float(v) for v in p), strict=True))


def administer(
    bank: CatBank,
    config: CatConfig,
    answer: Sequence[bool] | npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> CatResult:
    """Run a whole test against fixed answers (``answer[i]``: would item i be correct).

    For simulations and benchmarks; a live session calls the three steps itself.
    """
    state = start(config)
    while (item := next_item(state, bank, rng)) is not None:
        state = record_answer(state, item, bool(answer[item]))
    return result(state, bank)


__all__ = [
    "CatBank",
    "CatConfig",
    "CatResult",
    "CatState",
    "PlacementError",
    "StopReason",
    "administer",
    "next_item",
    "placement_mastery",
    "record_answer",
    "result",
    "start",
    "stop_reason",
]
