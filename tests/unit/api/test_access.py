"""Who may read a learner, use a role-gated endpoint, or manage and join a class."""

from __future__ import annotations

import pytest

from api.services.access import may_manage_learner, may_read_learner, role_refusal
from api.services.classes import MemberRole, may_manage_class, membership_problem
from api.services.principals import Principal, PrincipalKind, Role


def user(*roles: Role, subject: str = "me", mfa: bool = False) -> Principal:
    return Principal("acme", subject, PrincipalKind.USER, frozenset(roles), mfa_verified=mfa)


CLIENT_APP = Principal("acme", "lsk_0011aabb", PrincipalKind.CLIENT_APP)


@pytest.mark.parametrize(
    ("principal", "learner", "teaches", "allowed"),
    [
        (CLIENT_APP, "anyone", False, True),
        (user(Role.LEARNER), "me", False, True),
        (user(Role.LEARNER), "other", False, False),
        (user(Role.TEACHER), "other", False, False),
        (user(Role.TEACHER), "other", True, True),
        (user(Role.AUTHOR, Role.REVIEWER, Role.OPERATOR), "other", True, False),
        (user(Role.ADMIN, mfa=True), "other", False, True),
        (user(Role.ADMIN), "other", False, False),
    ],
)
def test_may_read_learner(principal: Principal, learner: str, teaches: bool, allowed: bool) -> None:
    assert may_read_learner(principal, learner, teaches_learner=teaches) is allowed


def test_role_refusal_names_the_missing_role() -> None:
    refusal = role_refusal(user(Role.LEARNER), frozenset({Role.TEACHER, Role.ADMIN}))
    assert refusal is not None
    assert "admin, teacher" in refusal


def test_client_apps_cannot_use_user_endpoints() -> None:
    assert role_refusal(CLIENT_APP, frozenset(Role)) is not None


def test_admin_role_counts_only_after_mfa() -> None:
    allowed = frozenset({Role.ADMIN})
    assert "MFA" in (role_refusal(user(Role.ADMIN), allowed) or "")
    assert role_refusal(user(Role.ADMIN, mfa=True), allowed) is None


def test_a_non_mfa_role_suffices_without_mfa() -> None:
    # A teacher who is also an admin can use a teacher-or-admin endpoint as teacher.
    assert (
        role_refusal(user(Role.TEACHER, Role.ADMIN), frozenset({Role.TEACHER, Role.ADMIN})) is None
    )


@pytest.mark.parametrize(
    ("principal", "teaches", "allowed"),
    [
        (user(Role.ADMIN), False, True),
        (user(Role.TEACHER), True, True),
        (user(Role.TEACHER), False, False),
        (user(Role.LEARNER), True, False),
        (CLIENT_APP, True, False),
    ],
)
def test_may_manage_class(principal: Principal, teaches: bool, allowed: bool) -> None:
    assert may_manage_class(principal, teaches_class=teaches) is allowed


@pytest.mark.parametrize(
    ("member_role", "roles", "ok"),
    [
        (MemberRole.TEACHER, {Role.TEACHER}, True),
        (MemberRole.TEACHER, {Role.LEARNER}, False),
        (MemberRole.LEARNER, {Role.LEARNER}, True),
        (MemberRole.LEARNER, {Role.ADMIN}, False),
    ],
)
def test_membership_needs_the_matching_role(
    member_role: MemberRole, roles: set[Role], ok: bool
) -> None:
    assert (membership_problem(member_role, frozenset(roles)) is None) is ok


@pytest.mark.parametrize(
    ("principal", "learner", "allowed"),
    [
        (CLIENT_APP, "anyone", True),
        (user(Role.LEARNER), "me", True),
        (user(Role.LEARNER), "other", False),
        (user(Role.TEACHER), "other", False),
        (user(Role.ADMIN), "other", False),
        (user(Role.ADMIN, mfa=True), "other", True),
    ],
)
def test_may_manage_learner(principal: Principal, learner: str, allowed: bool) -> None:
    assert may_manage_learner(principal, learner) is allowed
