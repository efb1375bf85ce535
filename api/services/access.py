"""Who may read or change what, within one tenant. Pure rules first, then their enforcement.

Tenancy is not decided here: every query filters on the caller's tenant_id, so a
learner of another tenant is simply absent (404). These rules decide between
callers of the same tenant (403).
"""

from __future__ import annotations

from typing import Any

from api.exceptions import ForbiddenError
from api.services import audit, mfa
from api.services.principals import Principal, PrincipalKind, Role


def may_read_learner(principal: Principal, learner_id: str, *, teaches_learner: bool) -> bool:
    """True if ``principal`` may read learner ``learner_id``'s views in its tenant.

    A client app may (it posted the events); a learner only themself; a teacher
    the learners of their classes (``teaches_learner``); an admin (signed in
    with MFA) anyone.
    """
    if principal.is_client_app:
        return True
    if principal.subject_id == learner_id:
        return True
    if role_refusal(principal, frozenset({Role.ADMIN})) is None:  # admin, MFA-verified
        return True
    return principal.has_role(Role.TEACHER) and teaches_learner


async def ensure_can_read_learner(db: Any, principal: Principal, learner_id: str) -> None:
    """Return if allowed; otherwise audit the denial and raise ForbiddenError (403)."""
    teaches = False
    if principal.has_role(Role.TEACHER) and principal.subject_id != learner_id:
        teaches = await teaches_learner(
            db,
            tenant_id=principal.tenant_id,
            teacher_id=principal.subject_id,
            learner_id=learner_id,
        )
    if not may_read_learner(principal, learner_id, teaches_learner=teaches):
        await deny(db, principal, target_id=learner_id, what="read learner")
        raise ForbiddenError(
            "you may read only your own data or that of learners in your classes",
            field="path.user_id",
            reason="not permitted for this caller",
        )


async def teaches_learner(db: Any, *, tenant_id: str, teacher_id: str, learner_id: str) -> bool:
    """True if ``learner_id`` is enrolled in a class that ``teacher_id`` teaches."""
    found = await db.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM class_members t JOIN class_members l USING (tenant_id, class_id)
            WHERE t.tenant_id = $1 AND t.user_id::text = $2 AND t.member_role = 'teacher'
              AND l.user_id::text = $3 AND l.member_role = 'learner')
        """,
        tenant_id,
        teacher_id,
        learner_id,
    )
    return bool(found)


async def deny(db: Any, principal: Principal, *, target_id: str | None, what: str) -> None:
    """Audit an access denial for ``principal``."""
    kind = "client_app" if principal.kind is PrincipalKind.CLIENT_APP else "user"
    await audit.record(
        db,
        tenant_id=principal.tenant_id,
        actor=(kind, principal.subject_id),
        action=audit.Action.ACCESS_DENIED,
        outcome=audit.Outcome.DENIED,
        target_id=target_id,
        details={"what": what},
    )


def role_refusal(principal: Principal, allowed: frozenset[Role]) -> str | None:
    """Why ``principal`` may not use an endpoint open to ``allowed`` roles; None if it may.

    A role that requires MFA (admin, operator) only counts when the access token
    was issued after an MFA check.
    """
    if principal.is_client_app:
        return "this endpoint is for signed-in users, not API keys"
    held = principal.roles & allowed
    if not held:
        names = ", ".join(sorted(allowed))
        return f"requires one of the roles: {names}"
    usable = {role for role in held if not mfa.mfa_required(frozenset({role}))}
    if not usable and not principal.mfa_verified:
        return (
            "this role requires MFA: enrol at POST /v1/auth/mfa/enrol, then sign in again "
            "with a code"
        )
    return None


def may_manage_learner(principal: Principal, learner_id: str) -> bool:
    """True if ``principal`` may change, export or erase learner ``learner_id``'s data.

    The learner themself, an admin signed in with MFA, or the tenant's client app;
    teachers only read.
    """
    if principal.is_client_app or principal.subject_id == learner_id:
        return True
    return role_refusal(principal, frozenset({Role.ADMIN})) is None  # admin, MFA-verified


async def ensure_can_manage_learner(db: Any, principal: Principal, learner_id: str) -> None:
    """Return if allowed; else audit the denial and raise ForbiddenError (403)."""
    if not may_manage_learner(principal, learner_id):
        await deny(db, principal, target_id=learner_id, what="manage learner")
        raise ForbiddenError(
            "only the learner, an MFA-signed-in admin or the tenant's app may do this",
            field="path.user_id",
            reason="not permitted for this caller",
        )
