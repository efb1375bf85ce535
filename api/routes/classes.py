"""Classes: create, list, members, and the teacher's mastery overview."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminUser, ClientIp, CurrentUser, PoolDep, TeacherOrAdmin
from api.schemas.classes import (
    ClassCreate,
    ClassMasteryPublic,
    ClassMemberPublic,
    ClassPublic,
    LearnerMasteryRow,
    MemberAdd,
)
from api.schemas.learners import SkillMasteryPublic
from api.services import classes

router = APIRouter(prefix="/v1/classes", tags=["classes"])


def _public(found: classes.SchoolClass) -> ClassPublic:
    return ClassPublic(
        class_id=found.class_id,
        name=found.name,
        created_at=found.created_at,
        members=[ClassMemberPublic.model_validate(m, from_attributes=True) for m in found.members],
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a class (teacher, admin)")
async def create_class(body: ClassCreate, principal: TeacherOrAdmin, pool: PoolDep) -> ClassPublic:
    return _public(await classes.create_class(pool, principal, name=body.name))


@router.get("", summary="Classes you belong to (all of the tenant for admins)")
async def list_classes(user: CurrentUser, pool: PoolDep) -> list[ClassPublic]:
    return [_public(found) for found in await classes.classes_of(pool, user)]


@router.get("/{class_id}", summary="One class with its members (its teachers, admins)")
async def get_class(class_id: str, principal: TeacherOrAdmin, pool: PoolDep) -> ClassPublic:
    return _public(await classes.require_managed_class(pool, principal, class_id=class_id))


@router.post("/{class_id}/members", summary="Enrol a user (admin; audited)")
async def add_member(
    class_id: str, body: MemberAdd, admin: AdminUser, pool: PoolDep, ip: ClientIp
) -> ClassPublic:
    """Admins only: membership decides whose data a class's teachers read."""
    found = await classes.add_member(
        pool, admin, class_id=class_id, user_id=body.user_id, member_role=body.member_role, ip=ip
    )
    return _public(found)


@router.delete(
    "/{class_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (admin; audited)",
)
async def remove_member(
    class_id: str, user_id: str, admin: AdminUser, pool: PoolDep, ip: ClientIp
) -> None:
    await classes.remove_member(pool, admin, class_id=class_id, user_id=user_id, ip=ip)


@router.get("/{class_id}/mastery", summary="Mastery of every learner in the class (heat map)")
async def class_mastery(
    class_id: str, principal: TeacherOrAdmin, pool: PoolDep
) -> ClassMasteryPublic:
    by_learner = await classes.class_mastery(pool, principal, class_id=class_id)
    return ClassMasteryPublic(
        class_id=class_id,
        learners=[
            LearnerMasteryRow(
                user_id=user_id,
                skills=[SkillMasteryPublic.model_validate(s, from_attributes=True) for s in rows],
            )
            for user_id, rows in by_learner.items()
        ],
    )
