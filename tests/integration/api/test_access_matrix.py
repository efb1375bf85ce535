"""Every route x every principal kind: the access matrix over HTTP.

One world is built once for the module: tenants acme and globex, each with a user of
every role, a teacher who is also an admin but signed in without MFA, and one
client-app key per scope; in acme, teacher T teaches class C holding learners L, L2
(L2 is the acme learner caller) and M. Every caller then calls every route of the
read API on acme's resources. The expected table below is written out by hand (not
derived from the code under test): allowed callers get the action's ``ok`` statuses;
callers of acme the rule refuses get 403 (404 where the action hides what exists,
401 for a key on a user-token route); callers of another tenant never get ``ok`` on
acme's resources; anonymous callers get 401 except on public routes. On tenant-wide
collections (users, keys, audit log, ...) another tenant's allowed caller gets ``ok``
with its own tenant's rows only: nothing of acme's may appear in the answer.

Actions whose success would change the world send a body that fails only after the
access check (FastAPI resolves the guards before it reports a body error), so the
422 an allowed caller gets proves the rule let it through.

test_every_route_is_in_the_matrix fails when a route is added without a row here.
"""

from __future__ import annotations

import re
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
from learnstream.apikeys import Scope
from learnstream.kafka import ensure_topics
from learnstream.settings import Settings
from tests.conftest import empty_tables
from tests.integration.api.conftest import PASSWORD, Mailbox, make_user, sign_in
from tests.integration.api.seeding import publish_question
from tests.unit.test_route_policies import _routes

ROLES = [r.value for r in Role]
KEYS = [f"key:{scope.value}" for scope in Scope]
# A teacher who is also an admin, signed in without MFA (issue 12, M2).
TEACHER_ADMIN_NO_MFA = "teacher_admin_nomfa"
KINDS = [*ROLES, TEACHER_ADMIN_NO_MFA, *KEYS]
CALLERS = [f"{tenant}:{who}" for tenant in ("acme", "globex") for who in KINDS]
CALLERS.append("anonymous")

USERS = frozenset({*ROLES, TEACHER_ADMIN_NO_MFA})
EVERYONE = frozenset({*USERS, *KEYS, "anonymous"})
OK = frozenset(range(200, 300))
BODY_REFUSED = frozenset({422})
# Through the access check, whatever the route then said (not 401, 403 or 404).
PASSED = frozenset(range(200, 600)) - {401, 403, 404}
ADMIN = frozenset({"admin"})
STAFF = frozenset({"author", "reviewer", "admin"})
EDITORS = frozenset({"author", "admin"})
READ_L = frozenset({"teacher", "admin", "key:views:read"})
CATALOGUE = frozenset({*USERS, "key:content:read"})
NOT_FOUND = frozenset({404})
NO_EXPERIMENT = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Action:
    method: str
    path: str  # {L} learner, {C} class, {L2} second learner, ... (see World.ids)
    body: object | None
    allowed: frozenset[str]  # caller kinds (of the resource's tenant) that may do it
    ok: frozenset[int] = OK  # what an allowed caller gets
    # True for tenant-wide collections: every tenant has its own, so an allowed caller
    # of another tenant gets ``ok`` too, on its own tenant's rows.
    collection: bool = False
    # True where a refused caller of acme may get 404: the route hides what exists
    # (drafts from non-staff) or the resource check runs after a lookup.
    hides: bool = False
    # What a refused caller of acme gets (401 where the route itself demands an MFA
    # sign-in, as /v1/auth/mfa/backup-codes does).
    refused: frozenset[int] = frozenset({403})
    # Sent by the same caller after a success, so the world is as before for the next case.
    undo_body: dict[str, object] | None = None


def _public(method: str, path: str, body: object | None, ok: frozenset[int]) -> Action:
    return Action(method, path, body, EVERYONE, ok, collection=True)


ACTIONS = {
    # public: no credentials needed (bodies are refused, nothing else)
    "healthz": _public("GET", "/healthz", None, frozenset({200})),
    "readyz": _public("GET", "/readyz", None, frozenset({200, 503})),
    # Served only on the loopback metrics port (issue 12, Info); the public port: 404.
    "metrics": _public("GET", "/metrics", None, frozenset({404})),
    "dashboard_page": _public("GET", "/dashboard", None, frozenset({200})),
    "register": _public("POST", "/v1/auth/register", {}, BODY_REFUSED),
    "verify_email": _public("POST", "/v1/auth/verify-email", {}, BODY_REFUSED),
    "resend_verification": _public("POST", "/v1/auth/verify-email/resend", {}, BODY_REFUSED),
    "login": _public("POST", "/v1/auth/login", {}, BODY_REFUSED),
    "login_mfa": _public("POST", "/v1/auth/login/mfa", {}, BODY_REFUSED),
    "refresh": _public("POST", "/v1/auth/refresh", {}, BODY_REFUSED),
    "password_reset_request": _public("POST", "/v1/auth/password-reset/request", {}, BODY_REFUSED),
    "password_reset_confirm": _public("POST", "/v1/auth/password-reset/confirm", {}, BODY_REFUSED),
    "unlock_by_token": _public("POST", "/v1/auth/unlock", {}, BODY_REFUSED),
    # single sign-on: the browser's steps are public; the tenant's providers are admin's
    "sso_buttons": _public("GET", "/v1/auth/oidc/providers?tenant_id=acme", None, frozenset({200})),
    "sso_start": _public(
        "GET", "/v1/auth/oidc/start?tenant_id=acme&provider_id=none", None, frozenset({404})
    ),
    "sso_callback": _public("GET", "/v1/auth/oidc/callback?state=x&code=y", None, frozenset({302})),
    "sso_exchange": _public("POST", "/v1/auth/oidc/exchange", {}, BODY_REFUSED),
    # LTI 1.3: the platform-facing steps are public (signed messages are the credential)
    "lti_login": _public("GET", "/v1/lti/login?iss=x&login_hint=y", None, BODY_REFUSED),
    "lti_login_post": _public("POST", "/v1/lti/login", None, BODY_REFUSED),
    "lti_launch": _public("POST", "/v1/lti/launch", None, BODY_REFUSED),
    "lti_jwks": _public("GET", "/v1/lti/jwks", None, frozenset({200})),
    "lti_deep_linking_page": _public(
        "GET", "/v1/lti/deep-linking?session=none", None, frozenset({401})
    ),
    "lti_deep_linking_response": _public("POST", "/v1/lti/deep-linking", None, BODY_REFUSED),
    "list_lti_platforms": Action(
        "GET", "/v1/tenants/me/lti-platforms", None, ADMIN, collection=True
    ),
    "register_lti_platform": Action(
        "POST", "/v1/tenants/me/lti-platforms", {}, ADMIN, BODY_REFUSED, collection=True
    ),
    "remove_lti_platform": Action(
        "DELETE",
        "/v1/tenants/me/lti-platforms/none",
        None,
        ADMIN,
        frozenset({404}),
        collection=True,
    ),
    "lti_publish_grades": Action(
        "POST",
        "/v1/lti/classes/{C}/grades",
        {"skill_id": "fractions"},
        frozenset({"teacher", "admin"}),
        frozenset({404}),  # class C was not made by an LTI launch
    ),
    "lti_roster_sync": Action(
        "POST",
        "/v1/lti/classes/{C}/roster-sync",
        None,
        frozenset({"teacher", "admin"}),
        frozenset({404}),  # class C was not made by an LTI launch
    ),
    "list_identity_providers": Action(
        "GET", "/v1/tenants/me/identity-providers", None, ADMIN, collection=True
    ),
    "add_identity_provider": Action(
        "POST", "/v1/tenants/me/identity-providers", {}, ADMIN, BODY_REFUSED, collection=True
    ),
    "remove_identity_provider": Action(
        "DELETE",
        "/v1/tenants/me/identity-providers/none",
        None,
        ADMIN,
        frozenset({404}),
        collection=True,
    ),
    "enrol_account": _public("POST", "/v1/auth/enrol", {}, BODY_REFUSED),
    # any signed-in user, never a key
    "logout": Action(
        "POST", "/v1/auth/logout", {"refresh_token": "x" * 201}, USERS, BODY_REFUSED, True
    ),
    "mfa_enrol": Action("POST", "/v1/auth/mfa/enrol", None, USERS, PASSED, collection=True),
    "mfa_backup_codes": Action(
        "POST",
        "/v1/auth/mfa/backup-codes",
        None,
        frozenset({"admin", "operator", "platform_operator"}),  # signed in with MFA
        frozenset({200}),
        collection=True,
        refused=frozenset({401}),
    ),
    "mfa_confirm_body_refused": Action(
        "POST", "/v1/auth/mfa/confirm", {}, USERS, BODY_REFUSED, collection=True
    ),
    "mfa_disable_body_refused": Action(
        "POST", "/v1/auth/mfa/disable", {}, USERS, BODY_REFUSED, collection=True
    ),
    "me": Action("GET", "/v1/users/me", None, USERS, collection=True),
    "list_classes": Action("GET", "/v1/classes", None, USERS, collection=True),
    # accounts: admins (MFA) only
    "list_users": Action("GET", "/v1/users", None, ADMIN, collection=True),
    "create_user": Action("POST", "/v1/users", {}, ADMIN, BODY_REFUSED, collection=True),
    "get_user": Action("GET", "/v1/users/{L}", None, ADMIN),
    "set_roles": Action("PUT", "/v1/users/{L}/roles", {"roles": ["learner"]}, ADMIN),
    "unlock_user": Action("POST", "/v1/users/{L}/unlock", None, ADMIN),
    "reset_user_mfa": Action("POST", "/v1/users/{L}/mfa/reset", None, ADMIN, PASSED),
    "create_api_key": Action(
        "POST", "/v1/api-keys", {"app_name": "x"}, ADMIN, frozenset({201}), collection=True
    ),
    "list_api_keys": Action("GET", "/v1/api-keys", None, ADMIN, collection=True),
    "revoke_api_key": Action("DELETE", "/v1/api-keys/{K}", None, ADMIN, frozenset({204})),
    "read_audit_log": Action("GET", "/v1/audit", None, ADMIN, collection=True),
    "get_learner_id": Action("GET", "/v1/users/{L}/learner-id", None, ADMIN),
    "set_learner_id": Action("PUT", "/v1/users/{L}/learner-id", {"learner_id": None}, ADMIN),
    "read_tenant_retention": Action(
        "GET", "/v1/tenants/me/retention", None, ADMIN, collection=True
    ),
    "set_tenant_retention": Action(
        "PUT", "/v1/tenants/me/retention", {"retention_days": None}, ADMIN, collection=True
    ),
    # classes
    "create_class": Action(
        "POST",
        "/v1/classes",
        {"name": "x"},
        frozenset({"teacher", "admin", TEACHER_ADMIN_NO_MFA}),  # teacher needs no MFA
        frozenset({201}),
        collection=True,
    ),
    "get_class": Action("GET", "/v1/classes/{C}", None, frozenset({"teacher", "admin"})),
    "class_mastery": Action(
        "GET", "/v1/classes/{C}/mastery", None, frozenset({"teacher", "admin"})
    ),
    "enrol_in_class": Action(
        "POST", "/v1/classes/{C}/members", {"user_id": "{L2}", "member_role": "learner"}, ADMIN
    ),
    "remove_from_class": Action(
        "DELETE", "/v1/classes/{C}/members/{M}", None, ADMIN, frozenset({204})
    ),
    "class_overview": Action(
        "GET", "/v1/dashboards/classes/{C}", None, frozenset({"teacher", "admin"})
    ),
    # one learner's views: themself, their teachers, admins, keys with views:read
    "read_class_learner_mastery": Action("GET", "/v1/learners/{L}/mastery", None, READ_L),
    "read_learner_predictions": Action("GET", "/v1/learners/{L}/predictions", None, READ_L),
    "explain_learner_prediction": Action(
        "GET", "/v1/learners/{L}/predictions/fractions?explain=true&top_k=3", None, READ_L
    ),
    "learner_dashboard": Action("GET", "/v1/dashboards/learners/{L}", None, READ_L),
    # Profiles are account data: users only, never a key.
    "read_learner_profile": Action(
        "GET", "/v1/learners/{L}/profile", None, frozenset({"teacher", "admin"})
    ),
    "read_learner_onboarding": Action(
        "GET", "/v1/learners/{L}/onboarding", None, frozenset({"teacher", "admin"})
    ),
    # one learner's account: themself or an admin (MFA); never a key
    "write_learner_profile": Action(
        "PUT", "/v1/learners/{L}/profile", {"display_name": "L"}, ADMIN
    ),
    "complete_onboarding_step": Action(
        "POST",
        "/v1/learners/{L}/onboarding/first_session",
        {},
        ADMIN,
        PASSED,  # steps before it are not done: refused after the access check
    ),
    "privacy_export": Action("GET", "/v1/learners/{L}/privacy/export", None, ADMIN),
    "privacy_erasure": Action(
        "POST", "/v1/learners/{L}/privacy/erasure", {"confirm": False}, ADMIN, BODY_REFUSED
    ),
    # learning activity for a learner: themself, admins, keys with feedback:write
    "recommendation_feedback": Action(
        "POST",
        "/v1/dashboards/learners/{L}/recommendations/{P}/feedback",
        {"verdict": "helpful"},
        frozenset({"admin", "key:feedback:write"}),
    ),
    "mark_notification_read": Action(
        "POST",
        "/v1/dashboards/learners/{L}/notifications/no-such-notification/read",
        None,
        frozenset({"admin", "key:feedback:write"}),
        frozenset({404}),  # allowed through, then no such notification
    ),
    # the catalogue: any signed-in user, keys with content:read
    "list_skills": Action("GET", "/v1/skills", None, CATALOGUE, collection=True),
    "skill_order": Action("GET", "/v1/skills/order", None, CATALOGUE, collection=True),
    "get_skill": Action("GET", "/v1/skills/{S}", None, CATALOGUE),
    "search_content": Action("GET", "/v1/content", None, CATALOGUE, collection=True),
    "read_published_item": Action("GET", "/v1/content/{P}", None, CATALOGUE),
    # authoring: authors, reviewers, admins (MFA)
    "create_skill": Action("POST", "/v1/skills", {}, EDITORS, BODY_REFUSED, collection=True),
    "edit_skill": Action("PUT", "/v1/skills/{S}", {"name": "Fractions"}, EDITORS),
    "delete_skill": Action(
        "DELETE", "/v1/skills/no-such-skill", None, EDITORS, frozenset({404}), collection=True
    ),
    "create_content": Action(
        "POST",
        "/v1/content",
        {"kind": "lesson", "title": "t", "payload": {"body_markdown": "b"}},
        EDITORS,
        frozenset({201}),
        collection=True,
    ),
    "import_content": Action(
        "POST", "/v1/content/import?dry_run=true", [], EDITORS, PASSED, collection=True
    ),
    "export_content": Action("GET", "/v1/content/export", None, STAFF, collection=True),
    "read_draft_item": Action("GET", "/v1/content/{D}", None, STAFF, hides=True),
    "edit_draft_item": Action(
        "PUT",
        "/v1/content/{D}",
        {"title": "Draft", "payload": {"body_markdown": "secret draft"}},
        EDITORS,
    ),
    "item_versions": Action("GET", "/v1/content/{D}/versions", None, STAFF),
    "rollback_item": Action("POST", "/v1/content/{D}/rollback", {"version": 1}, EDITORS),
    "submit_for_review": Action(
        "POST",
        "/v1/content/{D}/transitions",
        {"to_status": "in_review"},
        EDITORS,  # reviewers pass the route, the workflow refuses them this step (403)
        undo_body={"to_status": "draft"},
    ),
    "item_transitions": Action("GET", "/v1/content/{D}/transitions", None, STAFF),
    # xAPI activity mapping (CMS): staff read, editors change
    "list_xapi_activities": Action("GET", "/v1/xapi/activities", None, STAFF, collection=True),
    "map_xapi_activities": Action(
        "PUT", "/v1/xapi/activities", {}, EDITORS, BODY_REFUSED, collection=True
    ),
    "unmap_xapi_activity": Action(
        "DELETE",
        "/v1/xapi/activities?activity_id=https://no.such/activity",
        None,
        EDITORS,
        frozenset({404}),
        collection=True,
    ),
    "xapi_settings": Action("GET", "/v1/xapi/settings", None, STAFF, collection=True),
    "set_xapi_settings": Action(
        "PUT", "/v1/xapi/settings", {}, EDITORS, BODY_REFUSED, collection=True
    ),
    # placement: learners themselves
    "start_placement": Action(
        "POST",
        "/v1/placement/sessions",
        None,
        frozenset({"learner"}),
        frozenset({200, 201, 409}),
        collection=True,
    ),
    "get_placement": Action(
        "GET",
        "/v1/placement/sessions/no-such-session",
        None,
        frozenset({"learner"}),
        frozenset({404}),
        collection=True,
    ),
    "answer_placement": Action(
        "POST",
        "/v1/placement/sessions/no-such-session/answers",
        {},
        frozenset({"learner"}),
        BODY_REFUSED,
        collection=True,
    ),
    # experiments: admins (MFA); an unknown id is refused after the access check
    "list_experiments": Action("GET", "/v1/experiments", None, ADMIN, collection=True),
    "create_experiment": Action(
        "POST", "/v1/experiments", {}, ADMIN, BODY_REFUSED, collection=True
    ),
    "get_experiment": Action(
        "GET", f"/v1/experiments/{NO_EXPERIMENT}", None, ADMIN, NOT_FOUND, collection=True
    ),
    "start_experiment": Action(
        "POST", f"/v1/experiments/{NO_EXPERIMENT}/start", None, ADMIN, NOT_FOUND, True
    ),
    "stop_experiment": Action(
        "POST", f"/v1/experiments/{NO_EXPERIMENT}/stop", None, ADMIN, NOT_FOUND, True
    ),
    "experiment_results": Action(
        "GET", f"/v1/experiments/{NO_EXPERIMENT}/results", None, ADMIN, NOT_FOUND, True
    ),
    # tenant-wide rates, no learner named: teachers (no MFA needed) and admins
    "recommendation_analytics": Action(
        "GET",
        "/v1/analytics/recommendations",
        None,
        frozenset({"teacher", "admin", TEACHER_ADMIN_NO_MFA}),
        collection=True,
    ),
    # operations
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
    # Every tenant's offsets: platform operators only (issue 12, Info).
    "pipeline_health": Action(
        "GET",
        "/v1/operator/pipeline",
        None,
        frozenset({"platform_operator"}),
        collection=True,
    ),
}


@dataclass
class World:
    client: httpx.AsyncClient
    headers: dict[str, dict[str, str]]
    ids: dict[str, str]
    acme_key_ids: tuple[str, ...]
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
                both = await make_user(
                    pool, settings, tenant_id=tenant, roles={Role.TEACHER, Role.ADMIN}
                )
                login = await client.post(
                    "/v1/auth/login",
                    json={"tenant_id": tenant, "email": both.email, "password": PASSWORD},
                )
                assert login.status_code == 200, login.text
                assert login.json()["mfa_verified"] is False
                caller = f"{tenant}:{TEACHER_ADMIN_NO_MFA}"
                headers[caller] = {"Authorization": f"Bearer {login.json()['access_token']}"}
                subjects[caller] = both.id
                for scope in Scope:
                    key = await apikeys.create_api_key(
                        pool, tenant_id=tenant, app_name="app", scopes={scope}
                    )
                    caller = f"{tenant}:key:{scope.value}"
                    # Half the keys by X-API-Key, half as Bearer: both ways reach the rule.
                    headers[caller] = (
                        {"X-API-Key": key.plaintext}
                        if scope in (Scope.EVENTS_WRITE, Scope.CONTENT_READ)
                        else {"Authorization": f"Bearer {key.plaintext}"}
                    )
                    subjects[caller] = key.key_id
            throwaway_key = await apikeys.create_api_key(pool, tenant_id="acme", app_name="old")
            learner = await make_user(
                pool,
                settings,
                tenant_id="acme",
                roles={Role.LEARNER},
                email_address="class.learner@example.org",
            )
            leaving = await make_user(
                pool,
                settings,
                tenant_id="acme",
                roles={Role.LEARNER},
                email_address="leaving.learner@example.org",
            )
            created = await client.post(
                "/v1/classes", json={"name": "7B"}, headers=headers["acme:teacher"]
            )
            assert created.status_code == 201, created.text
            class_id = created.json()["class_id"]
            for member in (learner.id, second_learner, leaving.id):
                added = await client.post(
                    f"/v1/classes/{class_id}/members",
                    json={"user_id": member, "member_role": "learner"},
                    headers=headers["acme:admin"],
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
                "M": leaving.id,
                "K": throwaway_key.key_id,
            }
            acme_keys = tuple(v for k, v in subjects.items() if k.startswith("acme:key:"))
            yield World(client, headers, ids, (*acme_keys, throwaway_key.key_id), subjects)
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


def _expects_404_or_403(action: Action, who: str) -> frozenset[int]:
    """What a refused caller of acme gets for ``action``."""
    refused = set(action.refused)
    if who.startswith("key:"):
        refused.add(401)  # a key on a route that reads only user access tokens
    if action.hides:
        refused.add(404)
    return frozenset(refused)


def test_every_route_is_in_the_matrix() -> None:
    app = create_app(Settings())
    served = {
        (method, route.path)
        for route in _routes(app)
        if route.dependant is not None
        for method in route.methods or ()
    }
    covered = set()
    for action in ACTIONS.values():
        path = re.sub(r"\{[A-Z0-9]+\}", "x", action.path.split("?")[0])
        for method, template in served:
            parts = re.split(r"\{[^}]+\}", template)
            if method == action.method and re.fullmatch("[^/]+".join(map(re.escape, parts)), path):
                covered.add((method, template))
    assert sorted(served - covered) == []


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
        expected = action.ok if "anonymous" in action.allowed else frozenset({401})
        assert response.status_code in expected, response.text
    elif tenant == "acme" and who in action.allowed:
        assert response.status_code in action.ok, response.text
        if action.undo_body is not None:
            undone = await world.client.request(
                action.method,
                str(_fill(action.path, world.ids)),
                json=action.undo_body,
                headers=world.headers[caller],
            )
            assert undone.status_code == 200, undone.text
    elif action.collection and who in action.allowed:
        assert response.status_code in action.ok, response.text
        acme_marks: tuple[str, ...] = (
            ".acme@example.org",
            *world.ids.values(),
            *world.acme_key_ids,
        )
        if action_name == "read_audit_log":
            # The caller's tenant audits its own users' denied attempts, which name the
            # target they tried; that is their own input echoed, not acme's data.
            own_actors = {v for k, v in world.subjects.items() if k.startswith(tenant)}
            for entry in response.json()["items"]:
                if entry["target_id"] in world.ids.values():
                    assert entry["action"] == "access_denied", entry
                    assert entry["actor_id"] in own_actors, entry
            acme_marks = (".acme@example.org", *world.acme_key_ids)
        for acme_mark in acme_marks:
            assert acme_mark not in response.text
    elif tenant == "acme":
        assert response.status_code in _expects_404_or_403(action, who), response.text
        assert response.status_code not in action.ok
        assert response.headers["content-type"] == "application/problem+json"
        assert "secret draft" not in response.text
        # A refusal names no more of acme than the caller put in the path itself.
        assert world.ids["L"] not in response.text or "{L}" in action.path
    else:
        # Another tenant's caller never succeeds on acme's resources: refused, or acme's
        # resource is absent in its tenant, or its request failed after the access check
        # (an error from ``ok``, e.g. the erasure's unconfirmed body) without touching acme.
        refused = {403, 404, *action.refused, *([401] if who.startswith("key:") else [])}
        failed_after_check = response.status_code in action.ok - OK
        assert response.status_code in refused or failed_after_check, response.text
        assert "secret draft" not in response.text
