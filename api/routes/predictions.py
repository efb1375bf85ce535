"""Learner predictions: P(correct) per skill from the champion model, with explanations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from api.deps import LearnerViewer, PoolDep
from api.schemas.predictions import (
    AttemptWeightPublic,
    LearnerPredictionsPublic,
    SkillPredictionExplained,
    SkillPredictionPublic,
)
from api.services import access, predictions

router = APIRouter(prefix="/v1/learners", tags=["learners"])

UserIdPath = Path(min_length=1, max_length=200, description="The learner's id in the tenant")
SkillIdPath = Path(min_length=1, max_length=200, description="The skill's id in the tenant")


async def _champion(request: Request) -> predictions.ChampionTracer:
    # One per app (process): created on first use, so apps that never explain load nothing.
    state = request.app.state
    if getattr(state, "champion_tracer", None) is None:
        state.champion_tracer = predictions.ChampionTracer(state.settings)
    champion: predictions.ChampionTracer = state.champion_tracer
    return champion


ChampionDep = Annotated[predictions.ChampionTracer, Depends(_champion)]


@router.get("/{user_id}/predictions", summary="P(correct) per skill from the champion model")
async def get_predictions(
    principal: LearnerViewer, pool: PoolDep, user_id: str = UserIdPath
) -> LearnerPredictionsPublic:
    """404 when the tenant holds no predictions for the learner."""
    await access.ensure_can_read_learner(pool, principal, user_id)
    rows = await predictions.learner_predictions(
        pool, tenant_id=principal.tenant_id, user_id=user_id
    )
    return LearnerPredictionsPublic(
        user_id=user_id,
        skills=[SkillPredictionPublic.model_validate(r, from_attributes=True) for r in rows],
    )


@router.get(
    "/{user_id}/predictions/{skill_id}", summary="One skill's P(correct), optionally explained"
)
async def get_skill_prediction(
    principal: LearnerViewer,
    pool: PoolDep,
    champion: ChampionDep,
    user_id: str = UserIdPath,
    skill_id: str = SkillIdPath,
    explain: bool = Query(default=False, description="also list the attempts that mattered"),
    top_k: int = Query(default=5, ge=1, le=50, description="attempts listed at most"),
) -> SkillPredictionExplained:
    """404 naming the learner and skill when there is no prediction (or, explained, no
    stored learner state)."""
    await access.ensure_can_read_learner(pool, principal, user_id)
    if not explain:
        found = await predictions.skill_prediction(
            pool, tenant_id=principal.tenant_id, user_id=user_id, skill_id=skill_id
        )
        return SkillPredictionExplained(
            user_id=user_id,
            **SkillPredictionPublic.model_validate(found, from_attributes=True).model_dump(),
        )
    explained = await predictions.explain(
        pool,
        champion,
        tenant_id=principal.tenant_id,
        user_id=user_id,
        skill_id=skill_id,
        top_k=top_k,
    )
    return SkillPredictionExplained(
        user_id=user_id,
        **SkillPredictionPublic.model_validate(
            explained.prediction, from_attributes=True
        ).model_dump(),
        explained_by=explained.explained_by,
        explanation=[
            AttemptWeightPublic.model_validate(a, from_attributes=True) for a in explained.attempts
        ],
    )
