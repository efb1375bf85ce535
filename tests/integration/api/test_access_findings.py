"""The access findings of the 2026-12 attack review (issue 12), each replayed over HTTP.

Each test performs the attack as the review described it against the real app,
PostgreSQL and Redis, and proves it is refused now, and that the legitimate way to do
the same thing still works:

* H2: a client-app key erased, exported and edited any account, admins included;
  staff ids were visible to learners and keys in ``shown.created_by``.
* M2: a teacher who is also an admin, signed in without MFA, managed every class.
* M4: learners read answer keys, explanations, tests and reference solutions.
* L2: a teacher enrolled any learner in their class and so read their data.
* Info: an operator of one tenant saw every tenant's pipeline offsets.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from api.services.principals import Role
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.settings import Settings
from tests.integration.api.conftest import PASSWORD, SignedIn, make_user, sign_in
from tests.integration.api.seeding import ensure_skill


async def _every_scope_key(pool: asyncpg.Pool) -> tuple[str, dict[str, str]]:
    """A key of acme holding every scope: its key id and the header presenting it."""
    key = await apikeys.create_api_key(pool, tenant_id="acme", app_name="app", scopes=Scope)
    return key.key_id, {"Authorization": f"Bearer {key.plaintext}"}


async def test_api_key_cannot_erase_staff(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    key_id, key = await _every_scope_key(db_pool)  # even a key holding every scope
    erased = await api_client.post(
        f"/v1/learners/{admin.user.id}/privacy/erasure", json={"confirm": True}, headers=key
    )
    assert erased.status_code == 403, erased.text
    assert erased.headers["content-type"] == "application/problem+json"
    assert await db_pool.fetchval("SELECT count(*) FROM users WHERE id = $1", admin.user.id) == 1
    assert (await api_client.get("/v1/users/me", headers=admin.headers)).status_code == 200
    denied = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'access_denied' AND actor_id = $1",
        key_id,
    )
    assert denied == 1


async def test_api_key_cannot_export_or_edit_accounts(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    target = learner.user.id
    _, key = await _every_scope_key(db_pool)
    attempts: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/learners/{target}/privacy/export", None),
        ("PUT", f"/v1/learners/{target}/profile", {"display_name": "owned"}),
        ("GET", f"/v1/learners/{target}/profile", None),
        ("POST", f"/v1/learners/{target}/onboarding/profile", {}),
        ("GET", "/v1/users", None),
        ("PUT", f"/v1/users/{target}/roles", {"roles": ["admin"]}),
        ("POST", "/v1/api-keys", {"app_name": "more", "scopes": ["views:read"]}),
        ("GET", "/v1/audit", None),
        ("POST", "/v1/classes", {"name": "mine"}),
        ("GET", "/v1/classes", None),
    ]
    for method, path, body in attempts:
        response = await api_client.request(method, path, json=body, headers=key)
        # 401 where the route reads only user access tokens, 403 where keys are refused.
        assert response.status_code in (401, 403), (method, path, response.text)
    profile = await api_client.get(f"/v1/learners/{target}/profile", headers=learner.headers)
    assert profile.json()["display_name"] != "owned"
    # The learner still does it for themself.
    export = await api_client.get(f"/v1/learners/{target}/privacy/export", headers=learner.headers)
    assert export.status_code == 200


async def test_new_key_defaults_to_events_write_and_takes_named_scopes(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    plain = await api_client.post(
        "/v1/api-keys", json={"app_name": "poster"}, headers=admin.headers
    )
    assert plain.status_code == 201, plain.text
    assert plain.json()["scopes"] == ["events:write"]
    reads = await api_client.get(
        "/v1/skills", headers={"Authorization": f"Bearer {plain.json()['api_key']}"}
    )
    assert reads.status_code == 403
    assert "content:read" in reads.json()["detail"]
    reader = await api_client.post(
        "/v1/api-keys",
        json={"app_name": "reader", "scopes": ["content:read", "views:read"]},
        headers=admin.headers,
    )
    assert reader.json()["scopes"] == ["content:read", "views:read"]
    reads = await api_client.get(
        "/v1/skills", headers={"Authorization": f"Bearer {reader.json()['api_key']}"}
    )
    assert reads.status_code == 200
    bad = await api_client.post(
        "/v1/api-keys",
        json={"app_name": "x", "scopes": ["users:write"]},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    listed = await api_client.get("/v1/api-keys", headers=admin.headers)
    assert {k["app_name"]: k["scopes"] for k in listed.json()} == {
        "poster": ["events:write"],
        "reader": ["content:read", "views:read"],
    }


async def _publish(
    client: httpx.AsyncClient, author: SignedIn, reviewer: SignedIn, item: dict[str, Any]
) -> str:
    created = await client.post("/v1/content", json=item, headers=author.headers)
    assert created.status_code == 201, created.text
    item_id: str = created.json()["item_id"]
    for who, status in ((author, "in_review"), (reviewer, "approved"), (reviewer, "published")):
        moved = await client.post(
            f"/v1/content/{item_id}/transitions", json={"to_status": status}, headers=who.headers
        )
        assert moved.status_code == 200, moved.text
    return item_id


async def _content_world(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> tuple[SignedIn, SignedIn, dict[str, str]]:
    """An admin-authored question and code exercise, published; callers to read them."""
    await ensure_skill(pool, tenant_id="acme", skill_id="fractions", name="Fractions")
    admin = await sign_in(client, pool, settings, tenant_id="acme", roles={Role.ADMIN})
    reviewer = await sign_in(client, pool, settings, tenant_id="acme", roles={Role.REVIEWER})
    question = await _publish(
        client,
        admin,
        reviewer,
        {
            "kind": "question",
            "title": "Halves",
            "skill_ids": ["fractions"],
            "payload": {
                "prompt": "1/2 + 1/2?",
                "choices": ["1", "2"],
                "answer_key": ["1"],
                "explanation": "Two halves make one whole.",
            },
        },
    )
    exercise = await _publish(
        client,
        admin,
        reviewer,
        {
            "kind": "code_exercise",
            "title": "Add",
            "skill_ids": ["fractions"],
            "payload": {
                "prompt": "Write add(a, b).",
                "language": "python",
                "starter_code": "def add(a, b): ...",
                "tests": [{"name": "t1", "code": "assert add(1, 2) == 3"}],
                "reference_solution": "def add(a, b): return a + b",
            },
        },
    )
    return admin, reviewer, {"question": question, "exercise": exercise}


async def test_learner_cannot_read_answer_keys(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin, reviewer, items = await _content_world(api_client, db_pool, api_settings)
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="app", scopes={Scope.CONTENT_READ}
    )
    secrets = ("answer_key", "explanation", "Two halves", "tests", "reference_solution", "a + b")
    for headers in (learner.headers, {"X-API-Key": key.plaintext}):
        for item_id in items.values():
            one = await api_client.get(f"/v1/content/{item_id}", headers=headers)
            assert one.status_code == 200, one.text
            for secret in secrets:
                assert secret not in one.text, (item_id, secret)
        search = await api_client.get("/v1/content", headers=headers)
        assert len(search.json()["items"]) == 2
        for secret in secrets:
            assert secret not in search.text, secret
        question = await api_client.get(f"/v1/content/{items['question']}", headers=headers)
        assert question.json()["shown"]["payload"] == {
            "prompt": "1/2 + 1/2?",
            "choices": ["1", "2"],
        }
    # Staff still see everything they wrote.
    staff_view = await api_client.get(f"/v1/content/{items['question']}", headers=reviewer.headers)
    assert staff_view.json()["shown"]["payload"]["answer_key"] == ["1"]
    code = await api_client.get(f"/v1/content/{items['exercise']}", headers=admin.headers)
    assert code.json()["shown"]["payload"]["reference_solution"] == "def add(a, b): return a + b"


async def test_staff_ids_hidden_from_learners_and_keys(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin, reviewer, items = await _content_world(api_client, db_pool, api_settings)
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    key = await apikeys.create_api_key(
        db_pool, tenant_id="acme", app_name="app", scopes={Scope.CONTENT_READ}
    )
    for headers in (learner.headers, {"X-API-Key": key.plaintext}):
        listed = await api_client.get("/v1/content", headers=headers)
        one = await api_client.get(f"/v1/content/{items['question']}", headers=headers)
        for response in (listed, one):
            assert response.status_code == 200, response.text
            assert admin.user.id not in response.text
            assert reviewer.user.id not in response.text
        assert one.json()["shown"]["created_by"] is None
    staff_view = await api_client.get(f"/v1/content/{items['question']}", headers=reviewer.headers)
    assert staff_view.json()["shown"]["created_by"] == admin.user.id


async def _teacher_admin_without_mfa(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> dict[str, str]:
    both = await make_user(pool, settings, tenant_id="acme", roles={Role.TEACHER, Role.ADMIN})
    login = await client.post(
        "/v1/auth/login", json={"tenant_id": "acme", "email": both.email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    assert login.json()["mfa_verified"] is False
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_admin_without_mfa_cannot_manage_classes(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    created = await api_client.post("/v1/classes", json={"name": "7B"}, headers=teacher.headers)
    class_id = created.json()["class_id"]
    added = await api_client.post(
        f"/v1/classes/{class_id}/members",
        json={"user_id": learner.user.id, "member_role": "learner"},
        headers=admin.headers,
    )
    assert added.status_code == 200, added.text

    no_mfa = await _teacher_admin_without_mfa(api_client, db_pool, api_settings)
    listed = await api_client.get("/v1/classes", headers=no_mfa)
    assert listed.status_code == 200
    assert class_id not in listed.text  # not every class of the tenant
    for method, path, body in (
        ("GET", f"/v1/classes/{class_id}", None),
        ("GET", f"/v1/classes/{class_id}/mastery", None),
        ("GET", f"/v1/dashboards/classes/{class_id}", None),
        ("GET", f"/v1/learners/{learner.user.id}/mastery", None),
    ):
        response = await api_client.request(method, path, json=body, headers=no_mfa)
        assert response.status_code == 403, (path, response.text)
    teacher_self = await api_client.get("/v1/users/me", headers=no_mfa)
    joined = await api_client.post(
        f"/v1/classes/{class_id}/members",
        json={"user_id": teacher_self.json()["id"], "member_role": "teacher"},
        headers=no_mfa,
    )
    assert joined.status_code == 403, joined.text
    assert "MFA" in joined.json()["detail"]
    # The same powers with MFA.
    assert (await api_client.get("/v1/classes", headers=admin.headers)).text.count(class_id) == 1
    mastery = await api_client.get(f"/v1/classes/{class_id}/mastery", headers=admin.headers)
    assert mastery.status_code == 200


async def test_teacher_cannot_add_learner_to_class(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    learner = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.LEARNER}
    )
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    created = await api_client.post("/v1/classes", json={"name": "mine"}, headers=teacher.headers)
    assert created.status_code == 201, created.text
    class_id = created.json()["class_id"]
    member = {"user_id": learner.user.id, "member_role": "learner"}
    grab = await api_client.post(
        f"/v1/classes/{class_id}/members", json=member, headers=teacher.headers
    )
    assert grab.status_code == 403, grab.text
    dashboard = await api_client.get(
        f"/v1/dashboards/learners/{learner.user.id}", headers=teacher.headers
    )
    assert dashboard.status_code == 403
    assert (
        await api_client.get(f"/v1/learners/{learner.user.id}/mastery", headers=teacher.headers)
    ).status_code == 403

    enrolled = await api_client.post(
        f"/v1/classes/{class_id}/members", json=member, headers=admin.headers
    )
    assert enrolled.status_code == 200, enrolled.text
    assert (
        await api_client.get(f"/v1/learners/{learner.user.id}/mastery", headers=teacher.headers)
    ).status_code == 200
    removed = await api_client.delete(
        f"/v1/classes/{class_id}/members/{learner.user.id}", headers=teacher.headers
    )
    assert removed.status_code == 403
    removed = await api_client.delete(
        f"/v1/classes/{class_id}/members/{learner.user.id}", headers=admin.headers
    )
    assert removed.status_code == 204
    audited = await db_pool.fetch(
        "SELECT action, actor_id, details->>'class_id' AS class_id FROM audit_log "
        "WHERE target_id = $1 AND action LIKE 'class_member%' ORDER BY id",
        learner.user.id,
    )
    assert [(r["action"], r["actor_id"], r["class_id"]) for r in audited] == [
        ("class_member_added", admin.user.id, class_id),
        ("class_member_removed", admin.user.id, class_id),
    ]


async def test_operator_sees_only_own_tenant_offsets(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    # Partitions carry every tenant's events, so offsets cannot be cut by tenant: a
    # tenant's operator sees none of them; the deployment's platform operator does.
    operator = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.OPERATOR}
    )
    refused = await api_client.get("/v1/operator/pipeline", headers=operator.headers)
    assert refused.status_code == 403, refused.text
    assert "platform_operator" in refused.json()["detail"]
    # Still their own tenant's operator views.
    alerts = await api_client.get("/v1/operator/fraud-alerts", headers=operator.headers)
    assert alerts.status_code == 200
    # A tenant admin cannot make anyone a platform operator.
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    for method, path, body in (
        ("PUT", f"/v1/users/{operator.user.id}/roles", {"roles": ["platform_operator"]}),
        ("POST", "/v1/users", {"email": "p@example.org", "roles": ["platform_operator"]}),
    ):
        granted = await api_client.request(method, path, json=body, headers=admin.headers)
        assert granted.status_code == 422, granted.text
        assert "platform_operator" in granted.text
    platform = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.PLATFORM_OPERATOR}
    )
    seen = await api_client.get("/v1/operator/pipeline", headers=platform.headers)
    assert seen.status_code == 200, seen.text
