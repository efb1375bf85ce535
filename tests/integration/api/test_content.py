"""Content CMS over HTTP against real PostgreSQL.

Proves: the prerequisite graph refuses cycles naming them, and orders skills;
items keep every version (edit, history, rollback) with optimistic concurrency;
the workflow enforces steps, roles and four eyes, and learners only ever see the
live published version (which stays live while a newer draft is reviewed);
full-text search with skill/kind/status filters; bulk import with dry-run,
per-row errors and all-or-nothing writes; export re-imports as unchanged.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import SignedIn, sign_in


@pytest.fixture
async def staff(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> dict[str, SignedIn]:
    """An author, a reviewer, an author-reviewer and a learner in acme; an author in globex."""
    people = {}
    for name, tenant, roles in (
        ("author", "acme", {Role.AUTHOR}),
        ("reviewer", "acme", {Role.REVIEWER}),
        ("author_reviewer", "acme", {Role.AUTHOR, Role.REVIEWER}),
        ("learner", "acme", {Role.LEARNER}),
        ("other_author", "globex", {Role.AUTHOR}),
    ):
        people[name] = await sign_in(
            api_client,
            db_pool,
            api_settings,
            tenant_id=tenant,
            roles=roles,
            email_address=f"{name}@example.org",
        )
    for skill_id, prerequisites in (
        ("fractions", []),
        ("ratios", ["fractions"]),
        ("percent", ["ratios"]),
    ):
        created = await api_client.post(
            "/v1/skills",
            headers=people["author"].headers,
            json={"skill_id": skill_id, "name": skill_id.title(), "prerequisites": prerequisites},
        )
        assert created.status_code == 201, created.text
    return people


QUESTION = {"prompt": "What is 1/2 + 1/4?", "choices": ["3/4", "2/6"], "answer_key": ["3/4"]}


async def create_question(
    client: httpx.AsyncClient,
    who: SignedIn,
    item_id: str = "q-half",
    title: str = "Adding fractions",
    skill_ids: list[str] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/content",
        headers=who.headers,
        json={
            "item_id": item_id,
            "kind": "question",
            "title": title,
            "skill_ids": skill_ids or ["fractions"],
            "payload": payload or QUESTION,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def move(client: httpx.AsyncClient, who: SignedIn, item_id: str, to: str) -> httpx.Response:
    return await client.post(
        f"/v1/content/{item_id}/transitions",
        headers=who.headers,
        json={"to_status": to, "comment": f"to {to}"},
    )


async def test_cycle_is_refused_and_named(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn]
) -> None:
    response = await api_client.put(
        "/v1/skills/fractions",
        headers=staff["author"].headers,
        json={"name": "Fractions", "prerequisites": ["percent"]},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["field"] == "body.prerequisites"
    reason = problem["errors"][0]["reason"]
    for skill in ("fractions", "ratios", "percent"):
        assert skill in reason
    order = await api_client.get("/v1/skills/order", headers=staff["learner"].headers)
    assert order.json()["skill_ids"] == ["fractions", "ratios", "percent"]
    unknown = await api_client.put(
        "/v1/skills/ratios",
        headers=staff["author"].headers,
        json={"name": "R", "prerequisites": ["nope"]},
    )
    assert unknown.status_code == 422
    in_use = await api_client.delete("/v1/skills/fractions", headers=staff["author"].headers)
    assert in_use.status_code == 409
    assert "ratios" in in_use.json()["detail"]


async def test_other_tenant_sees_neither_skills_nor_items(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn]
) -> None:
    await create_question(api_client, staff["author"])
    other = staff["other_author"].headers
    assert (await api_client.get("/v1/skills", headers=other)).json() == []
    assert (await api_client.get("/v1/content/q-half", headers=other)).status_code == 404
    assert (await api_client.get("/v1/content", headers=other)).json()["items"] == []
    tagged_elsewhere = await api_client.post(
        "/v1/content",
        headers=other,
        json={"kind": "question", "title": "x", "skill_ids": ["fractions"], "payload": QUESTION},
    )
    assert tagged_elsewhere.status_code == 422  # acme's skill does not exist in globex


async def test_versions_history_rollback_and_stale_edit(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn]
) -> None:
    author = staff["author"].headers
    await create_question(api_client, staff["author"])
    edited = await api_client.put(
        "/v1/content/q-half",
        headers=author,
        json={
            "title": "Adding unlike fractions",
            "skill_ids": ["fractions"],
            "payload": {**QUESTION, "explanation": "common denominator"},
            "base_version": 1,
        },
    )
    assert edited.status_code == 200
    assert edited.json()["current_version"] == 2
    stale = await api_client.put(
        "/v1/content/q-half",
        headers=author,
        json={"title": "Lost update", "skill_ids": [], "payload": QUESTION, "base_version": 1},
    )
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["field"] == "body.base_version"

    rolled = await api_client.post(
        "/v1/content/q-half/rollback", headers=author, json={"version": 1}
    )
    assert rolled.status_code == 200
    assert rolled.json()["current_version"] == 3
    assert rolled.json()["shown"]["title"] == "Adding fractions"
    history = (await api_client.get("/v1/content/q-half/versions", headers=author)).json()
    assert [v["version"] for v in history] == [1, 2, 3]
    assert [v["title"] for v in history] == [
        "Adding fractions",
        "Adding unlike fractions",
        "Adding fractions",
    ]
    assert history[2]["note"] == "rollback to version 1"


async def test_workflow_roles_four_eyes_and_what_learners_see(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn]
) -> None:
    author, reviewer, learner = staff["author"], staff["reviewer"], staff["learner"]
    await create_question(api_client, author)
    assert (await api_client.get("/v1/content/q-half", headers=learner.headers)).status_code == 404

    skipped = await move(api_client, author, "q-half", "published")
    assert skipped.status_code == 409
    assert "not a workflow step" in skipped.json()["detail"]
    assert (await move(api_client, author, "q-half", "in_review")).status_code == 200
    self_approval = await move(api_client, author, "q-half", "approved")
    assert self_approval.status_code == 403  # authors do not approve
    assert (await move(api_client, reviewer, "q-half", "approved")).status_code == 200
    published = await move(api_client, reviewer, "q-half", "published")
    assert published.status_code == 200
    assert published.json()["published_version"] == 1

    seen = await api_client.get("/v1/content/q-half", headers=learner.headers)
    assert seen.status_code == 200
    assert seen.json()["shown"]["version"] == 1
    assert (
        await api_client.get("/v1/content/q-half/versions", headers=learner.headers)
    ).status_code == 403

    # A new draft does not unpublish: learners keep seeing version 1.
    edit = await api_client.put(
        "/v1/content/q-half",
        headers=author.headers,
        json={"title": "Draft wording zebra", "skill_ids": ["fractions"], "payload": QUESTION},
    )
    assert edit.json()["status"] == "draft"
    seen = await api_client.get("/v1/content/q-half", headers=learner.headers)
    assert seen.json()["shown"]["title"] == "Adding fractions"
    hidden = await api_client.get("/v1/content", params={"q": "zebra"}, headers=learner.headers)
    assert hidden.json()["items"] == []

    # Someone both author and reviewer cannot approve the version they wrote.
    both = staff["author_reviewer"]
    own_edit = await api_client.put(
        "/v1/content/q-half",
        headers=both.headers,
        json={"title": "Adding fractions v3", "skill_ids": ["fractions"], "payload": QUESTION},
    )
    assert own_edit.status_code == 200
    assert (await move(api_client, both, "q-half", "in_review")).status_code == 200
    own_approval = await move(api_client, both, "q-half", "approved")
    assert own_approval.status_code == 403
    assert "wrote" in own_approval.json()["detail"]
    assert (await move(api_client, reviewer, "q-half", "approved")).status_code == 200
    republished = await move(api_client, reviewer, "q-half", "published")
    assert republished.json()["published_version"] == 3

    assert (await move(api_client, author, "q-half", "archived")).status_code == 200
    assert (await api_client.get("/v1/content/q-half", headers=learner.headers)).status_code == 404
    steps = (
        await api_client.get("/v1/content/q-half/transitions", headers=reviewer.headers)
    ).json()
    assert [s["to_status"] for s in steps] == [
        "in_review",
        "approved",
        "published",
        "draft",
        "in_review",
        "approved",
        "published",
        "archived",
    ]


async def test_full_text_search_with_filters(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn]
) -> None:
    author = staff["author"]
    await create_question(api_client, author, "q1", "Adding fractions")
    await create_question(
        api_client,
        author,
        "q2",
        "Ratio of apples to pears",
        ["ratios"],
        {"prompt": "Apples to pears?", "answer_key": ["2:3"]},
    )
    lesson = await api_client.post(
        "/v1/content",
        headers=author.headers,
        json={
            "item_id": "l1",
            "kind": "lesson",
            "title": "Fractions explained",
            "skill_ids": ["fractions"],
            "payload": {"body_markdown": "A fraction has a denominator"},
        },
    )
    assert lesson.status_code == 201
    await move(api_client, author, "l1", "in_review")

    async def ids(**params: str) -> list[str]:
        found = await api_client.get("/v1/content", params=params, headers=author.headers)
        assert found.status_code == 200, found.text
        return [i["item_id"] for i in found.json()["items"]]

    assert set(await ids(q="fraction")) == {"q1", "l1"}  # stemming: fractions ~ fraction
    assert await ids(q="denominator") == ["l1"]
    assert await ids(q="fractions", kind="question") == ["q1"]
    assert await ids(skill_id="ratios") == ["q2"]
    assert await ids(status="in_review") == ["l1"]
    assert set(await ids(q="fractions -explained")) == {"q1"}
    first = (
        await api_client.get("/v1/content", params={"limit": "2"}, headers=author.headers)
    ).json()
    second = (
        await api_client.get(
            "/v1/content",
            params={"limit": "2", "cursor": first["next_cursor"]},
            headers=author.headers,
        )
    ).json()
    assert [i["item_id"] for i in first["items"] + second["items"]] == ["l1", "q1", "q2"]
    assert second["next_cursor"] is None


async def test_import_dry_run_row_errors_all_or_nothing_and_export_round_trip(
    api_client: httpx.AsyncClient, staff: dict[str, SignedIn], db_pool: asyncpg.Pool
) -> None:
    author = staff["author"].headers
    csv_text = (
        "item_id,kind,title,skill_ids,prompt,answer_key\n"
        'c1,question,Three quarters,fractions,"1/2 + 1/4?","[""3/4""]"\n'
        "c2,question,No key,fractions,What?,\n"
        'c3,question,Bad skill,geometry,"Angles?","[""90""]"\n'
    )
    dry = await api_client.post(
        "/v1/content/import",
        params={"format": "csv", "dry_run": "true"},
        content=csv_text,
        headers=author,
    )
    assert dry.status_code == 200
    report = dry.json()
    assert (report["applied"], report["created"]) == (False, ["c1"])
    assert {e["field"] for e in report["errors"]} == {
        "rows[2].payload.answer_key",
        "rows[3].skill_ids",
    }
    real = await api_client.post(
        "/v1/content/import", params={"format": "csv"}, content=csv_text, headers=author
    )
    assert real.status_code == 422
    assert len(real.json()["errors"]) == 2
    assert await db_pool.fetchval("SELECT count(*) FROM content_items") == 0  # nothing written

    good = "\n".join(csv_text.splitlines()[:2]) + "\n"
    applied = await api_client.post(
        "/v1/content/import", params={"format": "csv"}, content=good, headers=author
    )
    assert applied.status_code == 200
    assert applied.json()["created"] == ["c1"]

    for fmt in ("csv", "json"):
        exported = await api_client.get(
            "/v1/content/export", params={"format": fmt}, headers=author
        )
        assert exported.status_code == 200
        again = await api_client.post(
            "/v1/content/import", params={"format": fmt}, content=exported.text, headers=author
        )
        assert again.status_code == 200, again.text
        assert again.json()["unchanged"] == ["c1"]
    versions = await db_pool.fetchval("SELECT count(*) FROM content_versions")
    assert versions == 1  # unchanged rows add no version

    learner_import = await api_client.post(
        "/v1/content/import", content="[]", headers=staff["learner"].headers
    )
    assert learner_import.status_code == 403
