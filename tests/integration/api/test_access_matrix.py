"""Cross-tenant x cross-role access matrix over HTTP.

One world is built once for the module: tenants acme and globex, each with a user
of every role and a client-app key; in acme, teacher T teaches class C holding
learners L and L2 (L2 is the acme learner caller). Every caller then tries every
guarded action on acme's resources. The expected table below is written out by
hand (not derived from the code under test): allowed callers get 2xx; everyone
else gets 403 or 404; an anonymous caller gets 401. On acme's own resources
(a learner, a class) other tenants never get 2xx; on tenant-wide collections
(users, keys, audit log) another tenant's admin gets 2xx with its own tenant's
rows only: nothing of acme's may appear in the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from api.app import create_app
from api.services import accounts, content, skills
from api.services.principals import Principal, PrincipalKind, Role
from learnstream import apikeys, db
from learnstream.kafka import ensure_topics
from learnstream.settings import Settings
from tests.conftest import empty_tables
from tests.integration.api.conftest import Mailbox, make_user, sign_in
from tests.integration.api.seeding import publish_question

ROLES = [r.value for r in Role]
CALLERS = [f"{tenant}:{who}" for tenant in ("acme", "globex") for who in [*ROLES, "client_app"]]
CALLERS.append("anonymous")


@dataclass(frozen=True)
class Action:
    method: str
    path: str  # {L} learner, {C} class, {L2} second learner
    body: dict[str, object] | None
    allowed: frozenset[str]  # callers (of the resource's tenant) that may do it
    # True for tenant-wide collections: every tenant has its own, so an allowed role of
    # another tenant succeeds, on its own tenant's rows.
    collection: bool = False
    # Sent by the same caller after a success, so the world is as before for the next case.
    undo_body: dict[str, object] | None = None


ACTIONS = {
    "read_class_learner_mastery": Action(
        "GET",
        "/v1/learners/{L}/mastery",
        None,
        frozenset({"teacher", "admin", "client_app"}),
    ),
    "read_learner_profile": Action(
        "GET", "/v1/learners/{L}/profile", None, frozenset({"teacher", "admin", "client_app"})
    ),
    "write_learner_profile": Action(
        "PUT", "/v1/learners/{L}/profile", {"display_name": "L"}, frozenset({"admin", "client_app"})
    ),
    "privacy_export": Action(
        "GET", "/v1/learners/{L}/privacy/export", None, frozenset({"admin", "client_app"})
    ),
    "list_users": Action("GET", "/v1/users", None, frozenset({"admin"}), collection=True),
    "get_user": Action("GET", "/v1/users/{L}", None, frozenset({"admin"})),
    "set_roles": Action("PUT", "/v1/users/{L}/roles", {"roles": ["learner"]}, frozenset({"admin"})),
    "unlock_user": Action("POST", "/v1/users/{L}/unlock", None, frozenset({"admin"})),
    "create_api_key": Action(
        "POST", "/v1/api-keys", {"app_name": "x"}, frozenset({"admin"}), collection=True
    ),
    "list_api_keys": Action("GET", "/v1/api-keys", None, frozenset({"admin"}), collection=True),
    "read_audit_log": Action("GET", "/v1/audit", None, frozenset({"admin"}), collection=True),
    "get_class": Action("GET", "/v1/classes/{C}", None, frozenset({"teacher", "admin"})),
    "class_mastery": Action(
        "GET", "/v1/classes/{C}/mastery", None, frozenset({"teacher", "admin"})
    ),
    "create_content": Action(
        "POST",
        "/v1/content",
        {"kind": "lesson", "title": "t", "payload": {"body_markdown": "b"}},
        frozenset({"author", "admin"}),
        collection=True,
    ),
    "read_draft_item": Action(
        "GET", "/v1/content/{D}", None, frozenset({"author", "reviewer", "admin"})
    ),
    "item_versions": Action(
        "GET", "/v1/content/{D}/versions", None, frozenset({"author", "reviewer", "admin"})
    ),
    "submit_for_review": Action(
        "POST",
        "/v1/content/{D}/transitions",
        {"to_status": "in_review"},
        frozenset({"author", "admin"}),
        undo_body={"to_status": "draft"},
    ),
    "edit_skill": Action(
        "PUT", "/v1/skills/{S}", {"name": "Fractions"}, frozenset({"author", "admin"})
    ),
    "enrol_in_class": Action(
        "POST",
        "/v1/classes/{C}/members",
        {"user_id": "{L2}", "member_role": "learner"},
        frozenset({"teacher", "admin"}),
    ),
    "learner_dashboard": Action(
        "GET", "/v1/dashboards/learners/{L}", None, frozenset({"teacher", "admin", "client_app"})
    ),
    "recommendation_feedback": Action(
        "POST",
        "/v1/dashboards/learners/{L}/recommendations/{P}/feedback",
        {"verdict": "helpful"},
        frozenset({"admin", "client_app"}),
    ),
    "class_overview": Action(
        "GET", "/v1/dashboards/classes/{C}", None, frozenset({"teacher", "admin"})
    ),
    "set_learner_id": Action(
        "PUT", "/v1/users/{L}/learner-id", {"learner_id": None}, frozenset({"admin"})
    ),
    "fraud_alerts": Action(
        "GET",
        "/v1/operator/fraud-alerts?status=all",
        None,
        frozenset({"operator"}),
        collection=True,
    ),
    "review_fraud_alert": Action(
        "POST",
        "/v1/operator/fraud-alerts/attempt/{F}/review",
        {"decision": "dismissed"},
        frozenset({"operator"}),
    ),
    "read_learner_predictions": Action(
        "GET",
        "/v1/learners/{L}/predictions",
        None,
        frozenset({"teacher", "admin", "client_app"}),
    ),
    "explain_learner_prediction": Action(
        "GET",
        "/v1/learners/{L}/predictions/fractions?explain=true&top_k=3",
        None,
        frozenset({"teacher", "admin", "client_app"}),
    ),
    # Every tenant has its own retention: another tenant's admin reads and sets its own.
    "read_tenant_retention": Action(
        "GET", "/v1/tenants/me/retention", None, frozenset({"admin"}), collection=True
    ),
    "set_tenant_retention": Action(
        "PUT",
        "/v1/tenants/me/retention",
        {"retention_days": None},
        frozenset({"admin"}),
        collection=True,
    ),
    # Deployment-wide offsets and counts, no tenant data: every tenant's operators see it.
    "pipeline_health": Action(
        "GET", "/v1/operator/pipeline", None, frozenset({"operator"}), collection=True
    ),
}


@dataclass
class World:
    client: httpx.AsyncClient
    headers: dict[str, dict[str, str]]
    ids: dict[str, str]
    acme_key_id: str
    subjects: dict[str, str]  # caller -> user id or key id


@pytest.fixture(scope="module")
async def world(
    migrated_database: Settings, smtp_receiver: tuple[Mailbox, int]
) -> AsyncIterator[World]:
    settings = migrated_database.model_copy(
        update={
            "password_hash_profile": "cheapest",
            "smtp_port": smtp_receiver[1],
            "api_auth_rate_limit_per_minute": 10_000,
            "redis_namespace": f"{migrated_database.redis_namespace}:{uuid.uuid4().hex[:8]}",
            # Feedback is published: the module's own topics, created below.
            "kafka_topic_namespace": f"matrix{uuid.uuid4().hex[:8]}",
        }
    )
    ensure_topics(settings)
    pool = await db.create_pool(settings, max_size=4)
    await empty_tables(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            headers: dict[str, dict[str, str]] = {"anonymous": {}}
            key_ids: dict[str, str] = {}
            subjects: dict[str, str] = {}
            teacher_id = ""
            for tenant in ("acme", "globex"):
                await accounts.create_tenant(pool, tenant_id=tenant, name=tenant)
                for role in Role:
                    signed = await sign_in(client, pool, settings, tenant_id=tenant, roles={role})
                    headers[f"{tenant}:{role.value}"] = signed.headers
                    subjects[f"{tenant}:{role.value}"] = signed.user.id
                    if (tenant, role) == ("acme", Role.TEACHER):
                        teacher_id = signed.user.id
                    if (tenant, role) == ("acme", Role.LEARNER):
                        second_learner = signed.user.id
                key = await apikeys.create_api_key(pool, tenant_id=tenant, app_name="app")
                headers[f"{tenant}:client_app"] = {"X-API-Key": key.plaintext}
                key_ids[tenant] = key.key_id
                subjects[f"{tenant}:client_app"] = key.key_id
            learner = await make_user(
                pool,
                settings,
                tenant_id="acme",
                roles={Role.LEARNER},
                email_address="class.learner@example.org",
            )
            created = await client.post(
                "/v1/classes", json={"name": "7B"}, headers=headers["acme:teacher"]
            )
            assert created.status_code == 201, created.text
            class_id = created.json()["class_id"]
            for member in (learner.id, second_learner):
                added = await client.post(
                    f"/v1/classes/{class_id}/members",
                    json={"user_id": member, "member_role": "learner"},
                    headers=headers["acme:teacher"],
                )
                assert added.status_code == 200, added.text
            await pool.execute(
                """
                INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts,
                                           correct, last_event_id, last_attempt_at)
                VALUES ('acme', $1, 'fractions', 0.8, 5, 4, $2, $3)
                """,
                learner.id,
                uuid.uuid4(),
                datetime.now(UTC),
            )
            # What the predictions processor writes for L (BKT: no model in this store).
            await pool.execute(
                """
                INSERT INTO skill_predictions (tenant_id, user_id, skill_id, p_correct,
                                               model_version)
                VALUES ('acme', $1, 'fractions', 0.7, 'bkt')
                """,
                learner.id,
            )
            await pool.execute(
                """
                INSERT INTO prediction_learner_state (tenant_id, user_id, role, model_version,
                    answers_seen, history, recurrent, p_next)
                VALUES ('acme', $1, 'champion', 'bkt', 1, '[[["fractions"], true]]', NULL,
                        '{"fractions": 0.7}')
                """,
                learner.id,
            )
            assert teacher_id
            author = await make_user(
                pool,
                settings,
                tenant_id="acme",
                roles={Role.AUTHOR},
                email_address="writer@example.org",
            )
            author_principal = Principal(
                "acme", author.id, PrincipalKind.USER, frozenset({Role.AUTHOR})
            )
            skill_id = f"skill-{uuid.uuid4().hex[:8]}"
            await skills.create_skill(
                pool,
                tenant_id="acme",
                skill_id=skill_id,
                name="F",
                description="",
                prerequisites=[],
                now=datetime.now(UTC),
            )
            draft = await content.create_item(
                pool,
                author_principal,
                item_id=f"draft-{uuid.uuid4().hex[:8]}",
                kind=content.ContentKind.LESSON,
                title="Draft",
                skill_ids=[skill_id],
                payload={"body_markdown": "secret draft"},
                now=datetime.now(UTC),
            )
            published = f"pub-{uuid.uuid4().hex[:8]}"
            await publish_question(
                pool,
                tenant_id="acme",
                item_id=published,
                skill_id=skill_id,
                prompt="2 + 2?",
                choices=None,
                answer_key=["4"],
            )
            fraud_subject = str(uuid.uuid4())
            await pool.execute(
                """
                INSERT INTO fraud_signals (tenant_id, subject_kind, subject_id, user_id,
                    occurred_at, score, reasons, flagged, last_cause_id)
                VALUES ('acme', 'attempt', $1, $2, now(), 0.97, '[]', true, 'c')
                """,
                fraud_subject,
                learner.id,
            )
            ids = {
                "L": learner.id,
                "L2": second_learner,
                "C": class_id,
                "D": draft.item_id,
                "S": skill_id,
                "P": published,
                "F": fraud_subject,
            }
            yield World(client, headers, ids, key_ids["acme"], subjects)
    await pool.close()


def _fill(template: object, ids: dict[str, str]) -> object:
    if isinstance(template, str):
        for name, value in ids.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, ids) for v in template]
    return template


@pytest.mark.parametrize("action_name", sorted(ACTIONS))
@pytest.mark.parametrize("caller", CALLERS)
async def test_access_matrix(world: World, caller: str, action_name: str) -> None:
    action = ACTIONS[action_name]
    response = await world.client.request(
        action.method,
        str(_fill(action.path, world.ids)),
        json=_fill(action.body, world.ids) if action.body is not None else None,
        headers=world.headers[caller],
    )
    tenant, _, who = caller.partition(":")
    if caller == "anonymous":
        assert response.status_code == 401, response.text
    elif tenant == "acme" and who in action.allowed:
        assert 200 <= response.status_code < 300, response.text
        if action.undo_body is not None:
            undone = await world.client.request(
                action.method,
                str(_fill(action.path, world.ids)),
                json=action.undo_body,
                headers=world.headers[caller],
            )
            assert undone.status_code == 200, undone.text
    elif action.collection and who in action.allowed:
        assert 200 <= response.status_code < 300, response.text
        acme_marks = (".acme@example.org", *world.ids.values(), world.acme_key_id)
        if action_name == "read_audit_log":
            # The caller's tenant audits its own users' denied attempts, which name the
            # target they tried; that is their own input echoed, not acme's data.
            own_actors = {v for k, v in world.subjects.items() if k.startswith(tenant)}
            for entry in response.json()["items"]:
                if entry["target_id"] in world.ids.values():
                    assert entry["action"] == "access_denied", entry
                    assert entry["actor_id"] in own_actors, entry
            acme_marks = (".acme@example.org", world.acme_key_id)
        for acme_mark in acme_marks:
            assert acme_mark not in response.text
    else:
        assert response.status_code in (403, 404), response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert world.ids["L"] not in response.text or action_name in {
            # these paths name L themselves; the problem's "instance" echoes the path
            "read_class_learner_mastery",
            "read_learner_profile",
            "write_learner_profile",
            "privacy_export",
            "get_user",
            "set_roles",
            "unlock_user",
            "learner_dashboard",
            "recommendation_feedback",
            "set_learner_id",
            "read_learner_predictions",
            "explain_learner_prediction",
        }
        assert "secret draft" not in response.text
