"""Who may read a learner, use a role-gated endpoint, or manage and join a class."""

from __future__ import annotations

import pytest

from api.services.access import (
    may_act_for_learner,
    may_change_class_membership,
    may_manage_class,
    may_manage_learner,
    may_read_learner,
    may_see_all_classes,
    role_refusal,
)
from api.services.classes import MemberRole, membership_problem
from api.services.principals import Principal, PrincipalKind, Role
from learnstream.apikeys import Scope


def user(*roles: Role, subject: str = "me", mfa: bool = False) -> Principal:
    return Principal("acme", subject, PrincipalKind.USER, frozenset(roles), mfa_verified=mfa)


CLIENT_APP = Principal(
    "acme", "lsk_0011aabb", PrincipalKind.CLIENT_APP, scopes=frozenset(Scope)
)  # every scope: still no account actions
EVENTS_ONLY_APP = Principal(
    "acme", "lsk_0011aabc", PrincipalKind.CLIENT_APP, scopes=frozenset({Scope.EVENTS_WRITE})
)


@pytest.mark.parametrize(
    ("principal", "learner", "teaches", "allowed"),
    [
        (CLIENT_APP, "anyone", False, True),
        (EVENTS_ONLY_APP, "anyone", False, False),
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
        (user(Role.ADMIN), False, False),  # issue 12, M2: admin powers need MFA
        (user(Role.TEACHER, Role.ADMIN), False, False),
        (user(Role.TEACHER, Role.ADMIN), True, True),
        (user(Role.ADMIN, mfa=True), False, True),
        (user(Role.TEACHER), True, True),
        (user(Role.TEACHER), False, False),
        (user(Role.LEARNER), True, False),
        (CLIENT_APP, True, False),
    ],
)
def test_may_manage_class(principal: Principal, teaches: bool, allowed: bool) -> None:
    assert may_manage_class(principal, teaches_class=teaches) is allowed


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        (user(Role.TEACHER), False),  # issue 12, L2: membership decides whom they read
        (user(Role.TEACHER, Role.ADMIN), False),
        (user(Role.ADMIN, mfa=True), True),
        (CLIENT_APP, False),
    ],
)
def test_only_mfa_admins_change_membership_or_see_all_classes(
    principal: Principal, allowed: bool
) -> None:
    assert may_change_class_membership(principal) is allowed
    assert may_see_all_classes(principal) is allowed


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
        (CLIENT_APP, "anyone", False),  # issue 12, H2: keys never act on accounts
        (user(Role.LEARNER), "me", True),
        (user(Role.LEARNER), "other", False),
        (user(Role.TEACHER), "other", False),
        (user(Role.ADMIN), "other", False),
        (user(Role.ADMIN, mfa=True), "other", True),
    ],
)
def test_may_manage_learner(principal: Principal, learner: str, allowed: bool) -> None:
    assert may_manage_learner(principal, learner) is allowed


@pytest.mark.parametrize(
    ("principal", "learner", "allowed"),
    [
        (CLIENT_APP, "anyone", True),
        (EVENTS_ONLY_APP, "anyone", False),
        (user(Role.LEARNER), "me", True),
        (user(Role.TEACHER), "other", False),
        (user(Role.ADMIN, mfa=True), "other", True),
    ],
)
def test_may_act_for_learner(principal: Principal, learner: str, allowed: bool) -> None:
    assert may_act_for_learner(principal, learner) is allowed
