"""Skills and their prerequisite graph (authors and admins edit; every user reads)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.deps import CatalogueReader, Editor, Now, PoolDep
from api.schemas.skills import (
    LearningOrderPublic,
    SkillCreate,
    SkillFields,
    SkillPublic,
)
from api.services import skills

router = APIRouter(prefix="/v1/skills", tags=["skills"])

SkillIdPath = Annotated[str, Path(pattern=skills.SKILL_ID_PATTERN)]


def _public(skill: skills.Skill) -> SkillPublic:
    return SkillPublic.model_validate(skill, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a skill (author, admin)")
async def create_skill(body: SkillCreate, editor: Editor, pool: PoolDep, now: Now) -> SkillPublic:
    """422 naming the cycle when the prerequisites would close one."""
    created = await skills.create_skill(
        pool,
        tenant_id=editor.tenant_id,
        skill_id=body.skill_id,
        name=body.name,
        description=body.description,
        prerequisites=body.prerequisites,
        now=now,
    )
    return _public(created)


@router.get("", summary="Skills of the tenant with their prerequisites")
async def list_skills(principal: CatalogueReader, pool: PoolDep) -> list[SkillPublic]:
    return [_public(s) for s in await skills.list_skills(pool, tenant_id=principal.tenant_id)]


@router.get("/order", summary="Every skill in learning order (prerequisites first)")
async def learning_order(principal: CatalogueReader, pool: PoolDep) -> LearningOrderPublic:
    order = await skills.learning_order(pool, tenant_id=principal.tenant_id)
    return LearningOrderPublic(skill_ids=order)


@router.get("/{skill_id}", summary="One skill")
async def get_skill(
    skill_id: SkillIdPath, principal: CatalogueReader, pool: PoolDep
) -> SkillPublic:
    found = await skills.require_skill(pool, tenant_id=principal.tenant_id, skill_id=skill_id)
    return _public(found)


@router.put("/{skill_id}", summary="Replace a skill's fields and prerequisites (author, admin)")
async def update_skill(
    skill_id: SkillIdPath, body: SkillFields, editor: Editor, pool: PoolDep, now: Now
) -> SkillPublic:
    updated = await skills.update_skill(
        pool,
        tenant_id=editor.tenant_id,
        skill_id=skill_id,
        name=body.name,
        description=body.description,
        prerequisites=body.prerequisites,
        now=now,
    )
    return _public(updated)


@router.delete(
    "/{skill_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete (author, admin)"
)
async def delete_skill(skill_id: SkillIdPath, editor: Editor, pool: PoolDep) -> None:
    """409 while another skill requires it or current content is tagged with it."""
    await skills.delete_skill(pool, tenant_id=editor.tenant_id, skill_id=skill_id)
