"""Every route of both FastAPI apps declares who may call it, through the one access rule.

Issue 12 (H2, M2): routes that took a bare principal or checked roles by hand let API
keys act on accounts and admins skip MFA. This walks ``app.routes`` of the read API
and of ingest and fails for a route whose dependencies carry no ``access_policy``
(see :mod:`api.deps`, :mod:`ingest.deps`), and greps the source for role checks that
bypass :mod:`api.services.access` (``has_role``, raw ``principal.roles``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.app import create_app
from api.services import access
from api.services.principals import Principal, PrincipalKind, Role
from ingest.app import create_app as create_ingest_app
from learnstream.apikeys import Scope
from learnstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _routes(app: FastAPI) -> Iterator[Any]:
    """Every API route, with the dependencies of the routers it was included through.

    FastAPI >= 0.16x keeps included routers as nodes in ``app.routes``; their
    ``effective_route_contexts`` are the routes as served (router-level dependencies
    merged in).
    """
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        elif isinstance(route, APIRoute):
            yield route


def _policies(dependant: Dependant) -> list[object]:
    found = []
    for dependency in dependant.dependencies:
        policy = getattr(dependency.call, "access_policy", None)
        if policy is not None:
            found.append(policy)
        found.extend(_policies(dependency))
    return found


def _apps() -> list[tuple[str, FastAPI]]:
    settings = Settings()
    return [("api", create_app(settings)), ("ingest", create_ingest_app(settings))]


def _route_table() -> list[tuple[str, str, str, list[object]]]:
    table = []
    for name, app in _apps():
        for route in _routes(app):
            if route.dependant is None:
                continue
            for method in sorted(route.methods or ()):
                table.append((name, method, route.path, _policies(route.dependant)))
    return table


def test_every_route_declares_who_may_call_it() -> None:
    table = _route_table()
    undeclared = [f"{app} {method} {path}" for app, method, path, found in table if not found]
    assert undeclared == [], f"routes without an access policy: {undeclared}"


def test_the_walk_finds_every_route() -> None:
    # An empty walk would pass the test above; these routes exist in each app.
    seen = {(app, method, path) for app, method, path, _ in _route_table()}
    for expected in [
        ("api", "POST", "/v1/auth/login"),
        ("api", "POST", "/v1/learners/{user_id}/privacy/erasure"),
        ("api", "GET", "/v1/operator/pipeline"),
        ("api", "GET", "/healthz"),
        ("ingest", "POST", "/v1/events"),
        ("ingest", "GET", "/readyz"),
    ]:
        assert expected in seen
    assert len(seen) >= 75


def test_routes_acting_on_accounts_admit_no_api_key() -> None:
    account_prefixes = (
        "/v1/users",
        "/v1/api-keys",
        "/v1/classes",
        "/v1/audit",
        "/v1/tenants",
        "/v1/auth",
        "/v1/operator",
    )
    account_suffixes = ("/privacy/export", "/privacy/erasure", "/profile", "/onboarding")
    for app, method, path, found in _route_table():
        if app != "api":
            continue
        on_account = path.startswith(account_prefixes) or any(
            path.endswith(s) or f"{s}/" in path for s in account_suffixes
        )
        if not on_account:
            continue
        for policy in found:
            assert isinstance(policy, access.Policy)
            assert policy.key_scope is None, f"{method} {path} admits keys ({policy.name})"


def _key(*scopes: Scope) -> Principal:
    return Principal("t", "lsk_1", PrincipalKind.CLIENT_APP, scopes=frozenset(scopes))


def _user(*roles: Role, mfa: bool = False) -> Principal:
    return Principal("t", "u", PrincipalKind.USER, frozenset(roles), mfa_verified=mfa)


@pytest.mark.parametrize(
    ("principal", "policy", "allowed"),
    [
        (_key(Scope.EVENTS_WRITE), access.LEARNER_VIEWS, False),
        (_key(Scope.VIEWS_READ), access.LEARNER_VIEWS, True),
        (_key(*Scope), access.LEARNER_ACCOUNT, False),
        (_key(*Scope), access.ADMIN, False),
        (_key(Scope.CONTENT_READ), access.CATALOGUE_READ, True),
        (_key(Scope.FEEDBACK_WRITE), access.LEARNER_ACTIVITY, True),
        (_key(Scope.VIEWS_READ), access.LEARNER_ACTIVITY, False),
        (_key(), access.PUBLIC, True),
        (_user(Role.ADMIN), access.ADMIN, False),
        (_user(Role.ADMIN, mfa=True), access.ADMIN, True),
        (_user(Role.TEACHER, Role.ADMIN), access.TEACHER_OR_ADMIN, True),
        (_user(Role.OPERATOR, mfa=True), access.PLATFORM_OPERATOR, False),
        (_user(Role.PLATFORM_OPERATOR), access.PLATFORM_OPERATOR, False),
        (_user(Role.PLATFORM_OPERATOR, mfa=True), access.PLATFORM_OPERATOR, True),
        (_user(Role.LEARNER), access.LEARNER_ACCOUNT, True),
    ],
)
def test_refusal(principal: Principal, policy: access.Policy, allowed: bool) -> None:
    assert (access.refusal(principal, policy) is None) is allowed


# Role checks that do not go through api.services.access (which demands MFA where a
# role requires it): calling has_role, or reading a principal's roles directly.
_BYPASS = re.compile(r"\.has_role\(|principal\.roles\b|\bprincipal\.roles\s*[&|]")
_ALLOWED_FILES = {"api/services/access.py", "api/services/principals.py"}


def test_no_role_check_bypasses_the_access_rule() -> None:
    offenders = []
    for folder in ("api", "ingest", "learnstream"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in _ALLOWED_FILES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if _BYPASS.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == [], "check roles with api.services.access.holds_role:\n" + "\n".join(
        offenders
    )
