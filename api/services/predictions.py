"""Per-skill P(correct) as the predictions processor wrote it, and why (explanations).

``skill_predictions`` holds each learner's P(correct) per skill after their latest
attempt, from the registry's champion (or ``bkt``, the fallback). An explanation
restores the learner from ``prediction_learner_state`` into the champion tracer and
asks it which past attempts mattered most (:func:`ml.prediction_state.explain_prediction`).

The tracer is loaded lazily, once per API process (:class:`ChampionTracer`), and
reloaded when the registry's champion alias moves; the registry is asked at most
every ``settings.predictions_registry_poll_s`` seconds. torch and MLflow are imported
only when the tracer is first needed, so importing the API stays fast.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from api.exceptions import NotFoundError
from learnstream.db import Queryable
from learnstream.settings import Settings

if TYPE_CHECKING:
    from ml.serving import BKTTracer, ModelTracer


@dataclass(frozen=True, slots=True)
class SkillPrediction:
    """One skill_predictions row: P(correct) in [0, 1], the model that wrote it, UTC time."""

    skill_id: str
    p_correct: float
    model_version: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptWeight:
    """One past attempt of the learner and how much it mattered (largest magnitude first).

    ``answers_ago`` 0 is the newest attempt; ``weight`` is on the model's own scale
    (gradient x input for DKT): only its magnitude and sign compare across attempts.
    """

    answers_ago: int
    skill_id: str
    correct: bool
    weight: float


@dataclass(frozen=True, slots=True)
class ExplainedPrediction:
    """A prediction with the attempts behind it; ``explained_by`` names the tracer used."""

    prediction: SkillPrediction
    explained_by: str | None
    attempts: tuple[AttemptWeight, ...]


def _not_found(user_id: str, skill_id: str | None) -> NotFoundError:
    if skill_id is None:
        return NotFoundError(
            f"no predictions for learner {user_id!r} in your tenant",
            field="path.user_id",
            reason="no predictions",
        )
    return NotFoundError(
        f"no prediction for learner {user_id!r} on skill {skill_id!r} in your tenant",
        field="path.skill_id",
        reason="no prediction",
    )


def _prediction(row: Any) -> SkillPrediction:
    return SkillPrediction(
        skill_id=row["skill_id"],
        p_correct=row["p_correct"],
        model_version=row["model_version"],
        updated_at=row["updated_at"],
    )


async def learner_predictions(
    db: Queryable, *, tenant_id: str, user_id: str
) -> list[SkillPrediction]:
    """Every skill's prediction for the learner of ``tenant_id``, ordered by skill_id.

    404 (NotFoundError naming the learner) when the tenant holds none for them.
    """
    rows = await db.fetch(
        """
        SELECT skill_id, p_correct, model_version, updated_at FROM skill_predictions
        WHERE tenant_id = $1 AND user_id = $2 ORDER BY skill_id
        """,
        tenant_id,
        user_id,
    )
    if not rows:
        raise _not_found(user_id, None)
    return [_prediction(row) for row in rows]


async def skill_prediction(
    db: Queryable, *, tenant_id: str, user_id: str, skill_id: str
) -> SkillPrediction:
    """One skill's prediction; 404 naming the learner and skill when absent."""
    row = await db.fetchrow(
        """
        SELECT skill_id, p_correct, model_version, updated_at FROM skill_predictions
        WHERE tenant_id = $1 AND user_id = $2 AND skill_id = $3
        """,
        tenant_id,
        user_id,
        skill_id,
    )
    if row is None:
        raise _not_found(user_id, skill_id)
    return _prediction(row)


class ChampionTracer:
    """The registry's champion (or BKT) as a tracer, loaded once and reloaded on change.

    One per API process (kept on ``app.state``). Loading and registry polls are
    blocking MLflow calls: they run in a thread, one at a time.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tracer: ModelTracer | BKTTracer | None = None
        self._version: str | None = None  # registry version served; None for BKT
        self._next_poll = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> ModelTracer | BKTTracer:
        """The tracer to explain with, reloaded first if the champion alias moved."""
        async with self._lock:
            if self._tracer is None or time.monotonic() >= self._next_poll:
                await asyncio.to_thread(self._poll)
                self._next_poll = time.monotonic() + self.settings.predictions_registry_poll_s
            assert self._tracer is not None
            return self._tracer

    def _poll(self) -> None:
        # torch and MLflow are slow imports: only when an explanation is first asked for.
        import torch

        from ml.prediction_state import reload_needed
        from ml.registry import CHAMPION, ModelRegistry
        from ml.serving import BKTTracer, ModelTracer

        registry = ModelRegistry(self.settings)
        name = self.settings.ml_model_name
        champion = registry.version_by_alias(name, CHAMPION)
        version = None if champion is None else str(champion.version)
        if self._tracer is not None and not reload_needed(self._version, version):
            return
        device = torch.device("cpu")
        if version is None:
            self._tracer = BKTTracer()
        else:
            self._tracer = ModelTracer(registry.load_version(name, version, device), device)
        self._version = version


async def explain(
    db: asyncpg.Pool,
    champion: ChampionTracer,
    *,
    tenant_id: str,
    user_id: str,
    skill_id: str,
    top_k: int,
) -> ExplainedPrediction:
    """The prediction on ``skill_id`` and the learner's ``top_k`` attempts that mattered most.

    Largest weight magnitude first; empty for BKT (one number per skill, nothing to
    attribute) or when the stored state was written by no model this one knows.
    404 naming the learner and skill when there is no prediction or no stored state.
    """
    from ml.prediction_state import CHAMPION_ROLE, explain_prediction, learner_id
    from ml.serving import ModelTracer

    prediction = await skill_prediction(db, tenant_id=tenant_id, user_id=user_id, skill_id=skill_id)
    has_state = await db.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM prediction_learner_state
                       WHERE tenant_id = $1 AND user_id = $2 AND role = $3)
        """,
        tenant_id,
        user_id,
        CHAMPION_ROLE,
    )
    if not has_state:
        raise _not_found(user_id, skill_id)
    tracer = await champion.current()
    async with db.acquire() as conn:
        evidence = await explain_prediction(conn, tracer, tenant_id, user_id, skill_id, top_k=top_k)
    # The restored learner is only needed for this answer: memory must not grow with
    # every learner ever explained.
    tracer.restore(learner_id(tenant_id, user_id), ())
    label = tracer.loaded.label if isinstance(tracer, ModelTracer) else "bkt"
    return ExplainedPrediction(
        prediction=prediction,
        explained_by=label,
        attempts=tuple(
            AttemptWeight(e.answers_ago, e.skill_id, e.correct, e.weight) for e in evidence
        ),
    )
