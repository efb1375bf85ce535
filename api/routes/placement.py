"""Placement tests: start, answer question by question, read the result."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response, status

from api.deps import Learner, Now, PoolDep, PublisherDep, RedisDep, SettingsDep
from api.schemas.placement import (
    AnswerCreate,
    PlacementPublic,
    placement_public,
)
from api.services import placement

router = APIRouter(prefix="/v1/placement", tags=["placement"])

PlacementIdPath = Path(max_length=100, description="placement_id from the start answer")


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Start a placement test (or resume the one in progress)",
    responses={200: {"description": "a placement was in progress and is resumed"}},
)
async def start_placement(
    learner: Learner,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    now: Now,
    response: Response,
) -> PlacementPublic:
    """201 with the first question; 200 with the current question when one is in
    progress; 409 when the tenant has no calibrated published questions."""
    view, created = await placement.start(
        pool, redis, settings, tenant_id=learner.tenant_id, user_id=learner.subject_id, now=now
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return placement_public(view)


@router.get("/sessions/{placement_id}", summary="The current question, or the result")
async def get_placement(
    learner: Learner,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    publisher: PublisherDep,
    now: Now,
    placement_id: str = PlacementIdPath,
) -> PlacementPublic:
    """404 for someone else's placement or an expired session."""
    view = await placement.get(
        pool,
        redis,
        settings,
        publisher,
        tenant_id=learner.tenant_id,
        user_id=learner.subject_id,
        placement_id=placement_id,
        now=now,
    )
    return placement_public(view)


@router.post("/sessions/{placement_id}/answers", summary="Answer the current question")
async def answer_placement(
    body: AnswerCreate,
    learner: Learner,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
    publisher: PublisherDep,
    now: Now,
    placement_id: str = PlacementIdPath,
) -> PlacementPublic:
    """The next question, or the result once the stopping rule is met (ability and
    mastery seeded, onboarding's placement step done, PlacementEvent published).
    409 for an answer to another question than the current one."""
    view = await placement.answer(
        pool,
        redis,
        settings,
        publisher,
        tenant_id=learner.tenant_id,
        user_id=learner.subject_id,
        placement_id=placement_id,
        item_id=body.item_id,
        response=body.response,
        now=now,
    )
    return placement_public(view)
