"""Who may read or change what, within one tenant: the one access rule of the read API.

Two layers, both here:

* **Route policies** (:class:`Policy`): every route declares once which principal
  kinds may call it: users holding one of some roles (a role that requires MFA counts
  only in a token issued after an MFA check), any signed-in user, API keys holding a
  scope, or anyone. :func:`refusal` decides; :mod:`api.deps` turns a policy into a
  dependency, and tests/unit/test_route_policies.py fails for a route without one.
* **Resource rules** (``may_*``/``ensure_*``): which learner or class a caller that
  passed the route policy may touch (themself, the learners they teach, ...).

Role checks outside this module go through :func:`holds_role`, never
``Principal.has_role`` (which ignores MFA); a test greps the source for that.

Client-app keys never act on accounts: no scope admits a key to privacy, profiles,
users, roles, keys, classes or the audit log.

Tenancy is not decided here: every query filters on the caller's tenant_id, so a
learner of another tenant is simply absent (404). These rules decide between
callers of the same tenant (403).
"""

from __future__ import annotations

from dataclasses import dataclass

from api.exceptions import ForbiddenError
from api.services import audit, mfa
from api.services.principals import Principal, PrincipalKind, Role
from learnstream.apikeys import Scope
from learnstream.db import Queryable


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may call one route.

    A user passes when ``any_user`` is set or they hold one of ``roles`` (MFA-verified
    where the role requires it); an API key passes only when ``key_scope`` is set and
    the key holds it; ``public`` routes take anyone, credentials or not.
    """

    name: str
    roles: frozenset[Role] = frozenset()
    any_user: bool = False
    key_scope: Scope | None = None
    public: bool = False


# The policies routes use, in one table (docs/security.md "Principals, roles and scopes").
PUBLIC = Policy("anyone (no credentials)", public=True)
SIGNED_IN = Policy("any signed-in user", any_user=True)
ADMIN = Policy("admin (MFA)", roles=frozenset({Role.ADMIN}))
TEACHER_OR_ADMIN = Policy("teacher or admin (MFA)", roles=frozenset({Role.TEACHER, Role.ADMIN}))
EDITOR = Policy("author or admin (MFA)", roles=frozenset({Role.AUTHOR, Role.ADMIN}))
CONTENT_STAFF = Policy(
    "author, reviewer or admin (MFA)", roles=frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN})
)
LEARNER = Policy("learner", roles=frozenset({Role.LEARNER}))
OPERATOR = Policy("operator (MFA)", roles=frozenset({Role.OPERATOR}))
PLATFORM_OPERATOR = Policy("platform operator (MFA)", roles=frozenset({Role.PLATFORM_OPERATOR}))
CATALOGUE_READ = Policy(
    "any signed-in user, or a key with content:read", any_user=True, key_scope=Scope.CONTENT_READ
)
LEARNER_VIEWS = Policy(
    "signed-in user (resource rule: may_read_learner), or a key with views:read",
    any_user=True,
    key_scope=Scope.VIEWS_READ,
)
LEARNER_ACTIVITY = Policy(
    "signed-in user (resource rule: may_act_for_learner), or a key with feedback:write",
    any_user=True,
    key_scope=Scope.FEEDBACK_WRITE,
)
LEARNER_ACCOUNT = Policy(
    "signed-in user (resource rule: may_manage_learner); never a key", any_user=True
)


def refusal(principal: Principal, policy: Policy) -> str | None:
    """Why ``principal`` may not call a route declaring ``policy``; None if it may."""
    if policy.public:
        return None
    if principal.is_client_app:
        if policy.key_scope is None:
            return "this endpoint is for signed-in users, not API keys"
        if policy.key_scope not in principal.scopes:
            return f"this API key lacks the scope {policy.key_scope.value}"
        return None
    if policy.any_user:
        return None
    return role_refusal(principal, policy.roles)


def role_refusal(principal: Principal, allowed: frozenset[Role]) -> str | None:
    """Why ``principal`` does not usably hold one of ``allowed``; None if it does.

    A role that requires MFA (admin, operator, platform operator) only counts when the
    access token was issued after an MFA check.
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


def usable_roles(principal: Principal) -> frozenset[Role]:
    """The roles ``principal`` may use now: those requiring MFA only after an MFA check."""
    if principal.is_client_app:
        return frozenset()
    if principal.mfa_verified:
        return principal.roles
    return frozenset(r for r in principal.roles if not mfa.mfa_required(frozenset({r})))


def holds_role(principal: Principal, *roles: Role) -> bool:
    """True if ``principal`` is a user who may use one of ``roles`` now (MFA where required)."""
    return role_refusal(principal, frozenset(roles)) is None


async def ensure_allowed(db: Queryable, principal: Principal, policy: Policy) -> None:
    """Return if ``policy`` admits ``principal``; else audit and raise ForbiddenError (403)."""
    why = refusal(principal, policy)
    if why is not None:
        await deny(db, principal, target_id=None, what=why)
        raise ForbiddenError(why, field="header.Authorization", reason=why)


# --- learners ---------------------------------------------------------------------------


def may_read_learner(principal: Principal, learner_id: str, *, teaches_learner: bool) -> bool:
    """True if ``principal`` may read learner ``learner_id``'s views in its tenant.

    A client app holding views:read may (it posted the events); a learner only
    themself; a teacher the learners of their classes (``teaches_learner``); an admin
    (signed in with MFA) anyone.
    """
    if principal.is_client_app:
        return Scope.VIEWS_READ in principal.scopes
    if principal.subject_id == learner_id:
        return True
    if holds_role(principal, Role.ADMIN):
        return True
    return holds_role(principal, Role.TEACHER) and teaches_learner


async def ensure_can_read_learner(db: Queryable, principal: Principal, learner_id: str) -> None:
    """Return if allowed; otherwise audit the denial and raise ForbiddenError (403)."""
    teaches = False
    if holds_role(principal, Role.TEACHER) and principal.subject_id != learner_id:
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


async def teaches_learner(
    db: Queryable, *, tenant_id: str, teacher_id: str, learner_id: str
) -> bool:
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


def may_manage_learner(principal: Principal, learner_id: str) -> bool:
    """True if ``principal`` may change, export or erase learner ``learner_id``'s account data.

    The learner themself or an admin signed in with MFA. Never an API key: keys do not
    act on accounts (privacy, profiles). Teachers only read.
    """
    if principal.is_client_app:
        return False
    if principal.subject_id == learner_id:
        return True
    return holds_role(principal, Role.ADMIN)


async def ensure_can_manage_learner(db: Queryable, principal: Principal, learner_id: str) -> None:
    """Return if allowed; else audit the denial and raise ForbiddenError (403)."""
    if not may_manage_learner(principal, learner_id):
        await deny(db, principal, target_id=learner_id, what="manage learner")
        raise ForbiddenError(
            "only the learner or an MFA-signed-in admin may do this (API keys never act "
            "on accounts)",
            field="path.user_id",
            reason="not permitted for this caller",
        )


def may_act_for_learner(principal: Principal, learner_id: str) -> bool:
    """True if ``principal`` may record learning activity (feedback, notification reads).

    The learner themself, an admin signed in with MFA, or a client app holding
    feedback:write (the app the learner uses).
    """
    if principal.is_client_app:
        return Scope.FEEDBACK_WRITE in principal.scopes
    return may_manage_learner(principal, learner_id)


async def ensure_can_act_for_learner(db: Queryable, principal: Principal, learner_id: str) -> None:
    """Return if allowed; else audit the denial and raise ForbiddenError (403)."""
    if not may_act_for_learner(principal, learner_id):
        await deny(db, principal, target_id=learner_id, what="act for learner")
        raise ForbiddenError(
            "only the learner, an MFA-signed-in admin or a key with feedback:write may do this",
            field="path.user_id",
            reason="not permitted for this caller",
        )


# --- classes ----------------------------------------------------------------------------


def may_see_all_classes(principal: Principal) -> bool:
    """Admins (signed in with MFA) see every class of their tenant."""
    return holds_role(principal, Role.ADMIN)


def may_manage_class(principal: Principal, *, teaches_class: bool) -> bool:
    """Read a class's members and mastery: admins (MFA) every class, teachers their own."""
    if holds_role(principal, Role.ADMIN):
        return True
    return holds_role(principal, Role.TEACHER) and teaches_class


def may_change_class_membership(principal: Principal) -> bool:
    """Enrol or remove members: admins (MFA) only.

    Membership decides whose mastery and dashboard a teacher reads, so a teacher who
    could enrol any learner could read any learner (issue 12, L2).
    """
    return holds_role(principal, Role.ADMIN)


# --- content ----------------------------------------------------------------------------

CONTENT_STAFF_ROLES = CONTENT_STAFF.roles


def is_content_staff(principal: Principal) -> bool:
    """Authors, reviewers and admins (MFA) see drafts, answer keys and who wrote what."""
    return holds_role(principal, *CONTENT_STAFF_ROLES)


# --- audit ------------------------------------------------------------------------------


async def deny(db: Queryable, principal: Principal, *, target_id: str | None, what: str) -> None:
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
