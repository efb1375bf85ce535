"""LTI 1.3 Advantage against a platform harness written from the IMS specifications
(tests/integration/api/lti_platform.py), both on loopback sockets.

* launches over HTTP: a valid one signs in; wrong audience, replayed nonce, replayed
  state, expired token, unknown deployment, tampered claims and a retired key are
  refused; a rotated platform key is picked up;
* in headless Chromium: a teacher's launch lands on the teacher dashboard; Deep
  Linking places picked skills in the course;
* AGS: mastery goes to the gradebook (line item made once, retried on a 503); NRPS:
  the roster syncs into the class, inactive members leave it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser

from api.services.principals import Role
from infra import services
from learnstream.settings import Settings
from tests.integration.api.conftest import sign_in
from tests.integration.api.lti_platform import (
    INSTRUCTOR,
    LEARNER,
    PlatformServer,
    PlatformState,
    registration,
)
from tests.integration.api.test_dashboard_page import CHROMIUM
from tests.integration.api.test_oidc_sign_in import Server, browser  # noqa: F401  (fixture)

RESOURCE_LINK = "LtiResourceLinkRequest"


@pytest.fixture
def api_url(api_settings: Settings, db_pool: asyncpg.Pool) -> Iterator[str]:
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    with Server(api_settings.model_copy(update={"public_base_url": url}), port):
        yield url


@pytest.fixture
async def platform(
    api_url: str, db_pool: asyncpg.Pool, api_settings: Settings, tenants: tuple[str, str]
) -> Any:
    """The harness, with a teacher and two learners, registered by acme's admin."""
    with PlatformServer() as state:
        state.tool_url = api_url
        state.users = {
            "t-1": {"name": "Tess Teacher", "email": "tess@lms.example", "roles": [INSTRUCTOR]},
            "s-1": {"name": "Sam", "email": "sam@lms.example", "roles": [LEARNER]},
            "s-2": {"name": "Sue", "email": "sue@lms.example", "roles": [LEARNER]},
        }
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            admin = await sign_in(
                client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN}
            )
            added = await client.post(
                "/v1/tenants/me/lti-platforms", headers=admin.headers, json=registration(state)
            )
        assert added.status_code == 201, added.text
        assert added.json()["tool_login_url"] == f"{api_url}/v1/lti/login"
        yield state


async def initiate(client: httpx.AsyncClient, state: PlatformState, user: str) -> tuple[str, str]:
    """Login initiation as the platform sends it; (state, nonce) of the tool's redirect."""
    answer = await client.get(
        "/v1/lti/login",
        params={
            "iss": state.issuer,
            "login_hint": user,
            "target_link_uri": f"{state.tool_url}/v1/lti/launch",
            "client_id": "learnstream-tool",
        },
    )
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["response_mode"] == ["form_post"]
    assert query["redirect_uri"] == [f"{state.tool_url}/v1/lti/launch"]
    return query["state"][0], query["nonce"][0]


async def post_launch(client: httpx.AsyncClient, token: str, launch_state: str) -> httpx.Response:
    return await client.post("/v1/lti/launch", data={"id_token": token, "state": launch_state})


async def test_launches_are_validated_as_the_specification_requires(
    api_url: str, platform: PlatformState, db_pool: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        s, nonce = await initiate(client, platform, "s-1")
        good = platform.id_token(nonce=nonce, login_hint="s-1", message_type=RESOURCE_LINK)
        landed = await post_launch(client, good, s)
        assert landed.status_code == 302, landed.text
        location = landed.headers["location"]
        assert location.startswith("/dashboard?view=learner#action=oidc&code=")
        tokens = await client.post(
            "/v1/auth/oidc/exchange", json={"code": location.rsplit("=", 1)[1]}
        )
        me = await client.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
        )
        assert (me.json()["email"], me.json()["roles"]) == ("sam@lms.example", ["learner"])

        refusals: dict[str, tuple[str, str]] = {}

        async def refused(name: str, make: Any, expected: str, *, user: str = "s-1") -> None:
            launch_state, launch_nonce = await initiate(client, platform, user)
            answer = await post_launch(client, make(launch_nonce), launch_state)
            refusals[name] = (str(answer.status_code), answer.json()["detail"])
            assert answer.status_code == 401, (name, answer.text)
            assert expected in answer.json()["detail"], (name, answer.json()["detail"])

        def token(**overrides: Any) -> Any:
            return lambda n: platform.id_token(
                nonce=n, login_hint="s-1", message_type=RESOURCE_LINK, **overrides
            )

        await refused("wrong audience", token(aud="another-tool", azp=None), "claims do not hold")
        await refused("replayed nonce", lambda _n: good, "replayed nonce")
        await refused("expired", token(exp=1_600_000_000, iat=1_599_999_000), "claims do not hold")
        await refused(
            "unknown deployment",
            token(**{"https://purl.imsglobal.org/spec/lti/claim/deployment_id": "deployment-9"}),
            "unknown deployment",
        )

        def tampered(n: str) -> str:
            header, _payload, signature = token()(n).split(".")
            forged = token(sub="t-1")(n).split(".")[1]
            return f"{header}.{forged}.{signature}"

        await refused("tampered claims", tampered, "signature does not verify")
        replay_state = await post_launch(client, good, s)
        assert replay_state.status_code == 401
        assert "used state" in replay_state.json()["detail"]

        # The platform rotates its key: the new kid makes the tool refetch the JWKS, and
        # a token signed with the retired key no longer verifies.
        retired = platform.rotate_key()
        s2, n2 = await initiate(client, platform, "s-2")
        rotated = await post_launch(
            client, platform.id_token(nonce=n2, login_hint="s-2", message_type=RESOURCE_LINK), s2
        )
        assert rotated.status_code == 302, rotated.text
        await refused("retired key", token(key=retired), "signature does not verify")
    assert len(refusals) == 6
    assert await db_pool.fetchval("SELECT count(*) FROM user_identities") == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium: run `make setup-browser`")
async def test_teacher_launch_deep_linking_grades_and_roster(
    api_url: str,
    platform: PlatformState,
    browser: Browser,  # noqa: F811
    db_pool: asyncpg.Pool,
) -> None:
    for skill in ("fractions", "ratios"):
        await db_pool.execute(
            "INSERT INTO skills (tenant_id, skill_id, name) VALUES ('acme', $1, $2)",
            skill,
            skill.title(),
        )
    page = await browser.new_page()
    await page.goto(f"{platform.url}/start?user=t-1")
    await page.wait_for_selector("#teacher-view:not([hidden])")
    me = await page.evaluate("window.learnstream.state.me")
    assert (me["email"], me["roles"]) == ("tess@lms.example", ["teacher"])
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('learnstream.tokens'))")
    class_id = await db_pool.fetchval("SELECT class_id::text FROM lti_contexts")
    assert await db_pool.fetchval("SELECT name FROM classes") == "Fractions 101"

    # Deep Linking: the teacher picks two skills; the platform gets them signed.
    await page.goto(f"{platform.url}/start?user=t-1&message_type=LtiDeepLinkingRequest")
    await page.wait_for_selector("text=Add skills to this course")
    await page.check("input[value=fractions]")
    await page.check("input[value=ratios]")
    await page.click("text=Add to course")
    await page.click("text=Return to the course")
    await page.wait_for_selector("#placed")
    assert [(i["title"], i["custom"]) for i in platform.deep_link_items] == [
        ("Fractions", {"skill_id": "fractions"}),
        ("Ratios", {"skill_id": "ratios"}),
    ]

    headers = {"Authorization": f"Bearer {token['access_token']}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        # NRPS: the roster (two pages) fills the class.
        synced = await client.post(f"/v1/lti/classes/{class_id}/roster-sync", headers=headers)
        assert synced.json() == {"active_members": 3}, synced.text
        learners = await db_pool.fetch(
            "SELECT i.subject, cm.user_id::text FROM class_members cm JOIN user_identities i "
            "ON i.user_id = cm.user_id WHERE cm.member_role = 'learner' ORDER BY i.subject"
        )
        assert [r["subject"] for r in learners] == ["s-1", "s-2"]
        await db_pool.execute(
            "INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, "
            "correct, last_event_id, last_attempt_at) "
            "VALUES ('acme', $1, 'fractions', 0.8125, 4, 3, gen_random_uuid(), now())",
            learners[0]["user_id"],
        )
        # AGS: one 503 first (retried), then both learners' mastery; a second publish
        # reuses the line item.
        platform.score_failures = 1
        published = await client.post(
            f"/v1/lti/classes/{class_id}/grades", headers=headers, json={"skill_id": "fractions"}
        )
        assert published.json() == {"scores_posted": 2}, published.text
        again = await client.post(
            f"/v1/lti/classes/{class_id}/grades", headers=headers, json={"skill_id": "fractions"}
        )
        assert again.json() == {"scores_posted": 2}
        assert len(platform.line_items) == 1
        (item,) = platform.line_items.values()
        assert (item["resourceId"], item["scoreMaximum"]) == ("fractions", 1)
        given = {(s["userId"], s["scoreGiven"]) for s in platform.scores}
        assert given == {("s-1", 0.8125), ("s-2", 0.0)}
        assert len(platform.scores) == 4
        assert all(
            s["gradingProgress"] == "FullyGraded" and s["timestamp"] for s in platform.scores
        )

        # Sue leaves the course: the next sync takes her out of the class.
        platform.members_status["s-2"] = "Inactive"
        resynced = await client.post(f"/v1/lti/classes/{class_id}/roster-sync", headers=headers)
        assert resynced.json() == {"active_members": 2}
    remaining = await db_pool.fetchval(
        "SELECT count(*) FROM class_members WHERE member_role = 'learner'"
    )
    assert remaining == 1
