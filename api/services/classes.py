"""Classes: teachers and the learners they teach, within one tenant.

Rules (decided in :mod:`api.services.access`): only admins and teachers create classes
(a teacher who creates one teaches it); a class's members and mastery are read by its
teachers and by admins (MFA); only admins enrol or remove members, audited, because
membership decides whose data a teacher reads; a member joins as teacher only if they
hold the teacher role, as learner only with the learner role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from api.exceptions import ForbiddenError, InvalidInputError, NotFoundError
from api.services import access, audit, learner_ids
from api.services.identifiers import is_uuid
from api.services.mastery import SkillMastery, skill_mastery_from_row
from api.services.principals import Principal, Role
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.views import mastery as mastery_view


class MemberRole(StrEnum):
    """Role of a user within one class."""

    TEACHER = "teacher"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class ClassMember:
    user_id: str
    member_role: MemberRole
    display_name: str


@dataclass(frozen=True, slots=True)
class SchoolClass:
    """A class with its members (members empty when the caller may not see them)."""

    class_id: str
    tenant_id: str
    name: str
    created_at: datetime
    members: tuple[ClassMember, ...]


def membership_problem(member_role: MemberRole, user_roles: frozenset[Role]) -> str | None:
    """Why a user with ``user_roles`` cannot join as ``member_role``; None if they can."""
    needed = Role.TEACHER if member_role is MemberRole.TEACHER else Role.LEARNER
    if needed not in user_roles:
        return f"joining as {member_role.value} needs the {needed.value} role"
    return None


async def create_class(db: Queryable, principal: Principal, *, name: str) -> SchoolClass:
    """A new class; its creator teaches it when they hold the teacher role."""
    class_id = str(uuid.uuid4())
    async with transaction(db) as conn:
        await conn.execute(
            "INSERT INTO classes (tenant_id, class_id, name, created_by) VALUES ($1, $2, $3, $4)",
            principal.tenant_id,
            class_id,
            name,
            principal.subject_id,
        )
        if access.holds_role(principal, Role.TEACHER):
            await conn.execute(
                """
                INSERT INTO class_members (tenant_id, class_id, user_id, member_role)
                VALUES ($1, $2, $3, 'teacher')
                """,
                principal.tenant_id,
                class_id,
                principal.subject_id,
            )
        found = await get_class(conn, tenant_id=principal.tenant_id, class_id=class_id)
    assert found is not None
    return found


async def get_class(db: Queryable, *, tenant_id: str, class_id: str) -> SchoolClass | None:
    """The class with its members, or None (also for a malformed id or another tenant)."""
    if not is_uuid(class_id):
        return None
    row = await db.fetchrow(
        "SELECT class_id, name, created_at FROM classes WHERE tenant_id = $1 AND class_id = $2",
        tenant_id,
        class_id,
    )
    if row is None:
        return None
    members = await db.fetch(
        """
        SELECT m.user_id, m.member_role, u.display_name FROM class_members m
        JOIN users u ON u.id = m.user_id
        WHERE m.tenant_id = $1 AND m.class_id = $2 ORDER BY m.member_role DESC, m.user_id
        """,
        tenant_id,
        class_id,
    )
    return SchoolClass(
        class_id=str(row["class_id"]),
        tenant_id=tenant_id,
        name=row["name"],
        created_at=row["created_at"],
        members=tuple(
            ClassMember(str(m["user_id"]), MemberRole(m["member_role"]), m["display_name"])
            for m in members
        ),
    )


async def classes_of(db: Queryable, principal: Principal) -> list[SchoolClass]:
    """Classes the caller sees: all of the tenant for admins, else those they belong to.

    Members are listed only to those who may manage the class.
    """
    rows = await db.fetch(
        """
        SELECT c.class_id, c.name, c.created_at,
               EXISTS (SELECT 1 FROM class_members m WHERE m.tenant_id = c.tenant_id
                       AND m.class_id = c.class_id AND m.user_id::text = $2
                       AND m.member_role = 'teacher') AS teaches
        FROM classes c
        WHERE c.tenant_id = $1 AND ($3 OR EXISTS (
            SELECT 1 FROM class_members m WHERE m.tenant_id = c.tenant_id
            AND m.class_id = c.class_id AND m.user_id::text = $2))
        ORDER BY c.name, c.class_id
        """,
        principal.tenant_id,
        principal.subject_id,
        access.may_see_all_classes(principal),
    )
    found = []
    for row in rows:
        if access.may_manage_class(principal, teaches_class=row["teaches"]):
            full = await get_class(db, tenant_id=principal.tenant_id, class_id=str(row["class_id"]))
            assert full is not None
            found.append(full)
        else:
            found.append(
                SchoolClass(
                    str(row["class_id"]), principal.tenant_id, row["name"], row["created_at"], ()
                )
            )
    return found


async def require_managed_class(
    db: Queryable, principal: Principal, *, class_id: str
) -> SchoolClass:
    """The class if the caller may manage it; 404 if absent in the tenant, 403 if not theirs."""
    found = await get_class(db, tenant_id=principal.tenant_id, class_id=class_id)
    if found is None:
        raise NotFoundError(
            "no such class in this tenant", field="path.class_id", reason="not found"
        )
    teaches = any(
        m.user_id == principal.subject_id and m.member_role is MemberRole.TEACHER
        for m in found.members
    )
    if not access.may_manage_class(principal, teaches_class=teaches):
        await access.deny(db, principal, target_id=class_id, what="manage class")
        raise ForbiddenError(
            "only the class's teachers and admins manage it",
            field="path.class_id",
            reason="not your class",
        )
    return found


async def _require_membership_changer(db: Queryable, principal: Principal, class_id: str) -> None:
    await require_managed_class(db, principal, class_id=class_id)
    if not access.may_change_class_membership(principal):
        await access.deny(db, principal, target_id=class_id, what="change class membership")
        raise ForbiddenError(
            "only admins (signed in with MFA) enrol or remove class members",
            field="path.class_id",
            reason="not permitted for this caller",
        )


async def _audit_membership(
    db: Queryable,
    principal: Principal,
    action: audit.Action,
    *,
    class_id: str,
    user_id: str,
    ip: str | None,
    details: dict[str, str],
) -> None:
    await audit.record(
        db,
        tenant_id=principal.tenant_id,
        actor=(principal.kind.value, principal.subject_id),
        action=action,
        outcome=audit.Outcome.SUCCESS,
        target_id=user_id,
        ip=ip,
        details={"class_id": class_id, **details},
    )


async def add_member(
    db: Queryable,
    principal: Principal,
    *,
    class_id: str,
    user_id: str,
    member_role: MemberRole,
    ip: str | None = None,
) -> SchoolClass:
    """Enrol ``user_id`` (of the same tenant) as ``member_role``; idempotent; admins only.

    Audited as class_member_added (target: the user; details: class and role).
    """
    await _require_membership_changer(db, principal, class_id)
    roles = await db.fetchval(
        """
        SELECT coalesce(array_agg(r.role), '{}') FROM users u
        LEFT JOIN user_roles r ON r.user_id = u.id
        WHERE u.tenant_id = $1 AND u.id::text = $2 GROUP BY u.id
        """,
        principal.tenant_id,
        user_id,
    )
    if roles is None:
        raise NotFoundError("no such user in this tenant", field="body.user_id", reason="not found")
    problem = membership_problem(member_role, frozenset(Role(r) for r in roles))
    if problem is not None:
        raise InvalidInputError(problem, field="body.member_role", reason=problem)
    try:
        await db.execute(
            """
            INSERT INTO class_members (tenant_id, class_id, user_id, member_role)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, class_id, user_id) DO UPDATE SET member_role = $4
            """,
            principal.tenant_id,
            class_id,
            user_id,
            member_role.value,
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFoundError(
            "no such user in this tenant", field="body.user_id", reason="not found"
        ) from exc
    await _audit_membership(
        db,
        principal,
        audit.Action.CLASS_MEMBER_ADDED,
        class_id=class_id,
        user_id=user_id,
        ip=ip,
        details={"member_role": member_role.value},
    )
    found = await get_class(db, tenant_id=principal.tenant_id, class_id=class_id)
    assert found is not None
    return found


async def remove_member(
    db: Queryable, principal: Principal, *, class_id: str, user_id: str, ip: str | None = None
) -> None:
    """Take ``user_id`` out of the class; 404 if they were not in it; admins only, audited."""
    await _require_membership_changer(db, principal, class_id)
    status = await db.execute(
        "DELETE FROM class_members WHERE tenant_id = $1 AND class_id = $2 AND user_id::text = $3",
        principal.tenant_id,
        class_id,
        user_id,
    )
    if status != "DELETE 1":
        raise NotFoundError(
            "user is not in this class", field="path.user_id", reason="not a member"
        )
    await _audit_membership(
        db,
        principal,
        audit.Action.CLASS_MEMBER_REMOVED,
        class_id=class_id,
        user_id=user_id,
        ip=ip,
        details={},
    )


async def class_mastery(
    db: Queryable, principal: Principal, *, class_id: str
) -> dict[str, list[SkillMastery]]:
    """Per learner of the class (by account id), their skills' mastery: the heat map's cells.

    Rows are read under each account's learner id (api.services.learner_ids).
    """
    found = await require_managed_class(db, principal, class_id=class_id)
    members = [m.user_id for m in found.members if m.member_role is MemberRole.LEARNER]
    filed_under = await learner_ids.learner_ids_of(
        db, tenant_id=principal.tenant_id, user_ids=members
    )
    account_of = {learner: account for account, learner in filed_under.items()}
    rows = await mastery_view.learners_rows(
        db, tenant_id=principal.tenant_id, user_ids=list(account_of)
    )
    by_learner: dict[str, list[SkillMastery]] = {account: [] for account in members}
    for row in rows:
        by_learner[account_of[row["user_id"]]].append(skill_mastery_from_row(row))
    return by_learner
