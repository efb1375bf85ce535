"""Placement tests, the pure part: the bank, the session state, grading, the ability update.

The test (:mod:`scheduler.cat`) draws from the tenant's *published questions that have
calibrated IRT parameters*; each item counts for its first skill. Items are balanced
across skills (equal shares), picked by maximum information with randomesque exposure
control, and the test stops at ``placement_max_items`` answers or once the ability SE
reaches ``placement_se_target``. The flow over HTTP is :mod:`api.services.placement`;
storing the result is :mod:`api.services.placement_results`.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from api.exceptions import InvalidInputError
from learnstream.settings import Settings
from learnstream.views.ability import DEFAULT_PRIOR
from scheduler import cat, irt

# CatConfig's minimum test length; smaller banks or max_items shorten it.
MIN_ITEMS = 5


@dataclass(frozen=True, slots=True)
class BankItem:
    """One calibrated question: a > 0, b (logits), c in [0, 1); ``skill_id`` its first skill."""

    item_id: str
    skill_id: str
    a: float
    b: float
    c: float


@dataclass(frozen=True, slots=True)
class PlacementSession:
    """A placement test in progress, as stored in Redis. Times are UTC."""

    placement_id: str
    tenant_id: str
    user_id: str  # the account taking the test
    learner_id: str  # the id its views are filed under
    started_at: datetime
    bank: tuple[BankItem, ...]
    state: cat.CatState
    current: int | None  # bank index of the question awaiting an answer
    seed: int  # of the randomesque picks: step k draws from default_rng([seed, k])

    def to_json(self) -> str:
        """The stored form (JSON text)."""
        return json.dumps(
            {
                "placement_id": self.placement_id,
                "tenant_id": self.tenant_id,
                "user_id": self.user_id,
                "learner_id": self.learner_id,
                "started_at": self.started_at.isoformat(),
                "bank": {
                    "item_ids": [i.item_id for i in self.bank],
                    "skill_ids": [i.skill_id for i in self.bank],
                    "a": [i.a for i in self.bank],
                    "b": [i.b for i in self.bank],
                    "c": [i.c for i in self.bank],
                },
                "state": self.state.to_dict(),
                "current": self.current,
                "seed": self.seed,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PlacementSession:
        """Inverse of :meth:`to_json`; PlacementError if the stored value does not parse."""
        try:
            raw = json.loads(text)
            bank = raw["bank"]
            return cls(
                placement_id=str(raw["placement_id"]),
                tenant_id=str(raw["tenant_id"]),
                user_id=str(raw["user_id"]),
                learner_id=str(raw["learner_id"]),
                started_at=datetime.fromisoformat(raw["started_at"]),
                bank=tuple(
                    BankItem(str(i), str(s), float(a), float(b), float(c))
                    for i, s, a, b, c in zip(
                        bank["item_ids"],
                        bank["skill_ids"],
                        bank["a"],
                        bank["b"],
                        bank["c"],
                        strict=True,
                    )
                ),
                state=cat.CatState.from_dict(raw["state"]),
                current=None if raw["current"] is None else int(raw["current"]),
                seed=int(raw["seed"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise cat.PlacementError(f"stored placement session does not parse: {exc}") from exc

    def cat_bank(self) -> cat.CatBank:
        """The session's bank as the CAT needs it."""
        return cat_bank(self.bank)


def cat_bank(items: Sequence[BankItem]) -> cat.CatBank:
    """A :class:`scheduler.cat.CatBank` of ``items`` (in order, so indices match)."""
    return cat.CatBank(
        irt.ItemBank(
            np.array([i.a for i in items]),
            np.array([i.b for i in items]),
            np.array([i.c for i in items]),
        ),
        tuple(i.skill_id for i in items),
    )


def placement_config(bank: Sequence[BankItem], settings: Settings) -> cat.CatConfig:
    """Stopping rule from settings, equal shares per skill of the bank."""
    max_items = min(settings.placement_max_items, len(bank))
    skills = sorted({i.skill_id for i in bank})
    return cat.CatConfig.with_targets(
        dict.fromkeys(skills, 1.0),
        se_target=settings.placement_se_target,
        min_items=min(MIN_ITEMS, max_items),
        max_items=max_items,
    )


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The random source of the pick after ``step`` answers: the same on a replayed step."""
    return np.random.default_rng([seed, step])


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def grade(payload: Mapping[str, Any], response: str) -> bool:
    """True if ``response`` matches one of the question's ``answer_key`` entries.

    Matching ignores case, Unicode compatibility forms and runs of white space. For a
    multiple-choice question the response must be one of the choices (InvalidInputError,
    naming ``body.response``, otherwise).
    """
    given = _normalised(response)
    choices = payload.get("choices")
    if choices and given not in {_normalised(c) for c in choices}:
        raise InvalidInputError(
            "answer with one of the question's choices",
            field="body.response",
            reason="not one of the choices",
        )
    return given in {_normalised(k) for k in payload.get("answer_key", [])}


def ability_after(
    stored: irt.AbilityPosterior | None,
    answers: Sequence[tuple[BankItem, bool]],
    prior: irt.NormalPrior = DEFAULT_PRIOR,
) -> irt.AbilityPosterior:
    """The ability posterior after the placement ``answers``, on the stored grid.

    ``stored`` is the learner's posterior from ``learner_ability`` (None: a new learner,
    who starts from ``prior``). The log density is shifted to a maximum of 0, as the
    learner-state processor stores it.
    """
    posterior = stored if stored is not None else irt.initial_posterior(prior)
    for item, correct in answers:
        posterior = irt.update_posterior(posterior, item.a, item.b, item.c, float(correct))
    return irt.AbilityPosterior(
        posterior.points,
        posterior.log_density - posterior.log_density.max(),
        posterior.n_responses,
    )


def answers_of(session: PlacementSession) -> list[tuple[BankItem, bool]]:
    """The session's (question, correct) pairs in the order they were answered."""
    return [
        (session.bank[index], correct)
        for index, correct in zip(session.state.items, session.state.responses, strict=True)
    ]
