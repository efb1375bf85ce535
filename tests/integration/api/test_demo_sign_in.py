"""The people ``make demo`` creates can sign in as printed, and see what their role allows.

:func:`infra.demo_accounts.ensure_accounts` against the real database, Redis and API:
idempotent (a second run finds the same accounts and TOTP secret), the teacher sees
the class of replayed learners, a learner's dashboard is filed under the replayed id,
and the operator signs in with the printed TOTP secret and reads both the fraud alerts
and the pipeline's health.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from redis.asyncio import Redis

from api.services import accounts, mfa
from infra import demo_accounts
from learnstream.settings import Settings

REPLAYED = ["78276", "89171", "87449", "82303"]


async def _login(
    client: httpx.AsyncClient, tenant_id: str, person: demo_accounts.DemoSignIn
) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/login",
        json={"tenant_id": tenant_id, "email": person.email, "password": person.password},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    if body["mfa_required"]:
        assert person.totp_secret, f"{person.role} needs MFA but the demo printed no secret"
        # ensure_accounts spent the current TOTP step: an authenticator shows the next.
        code = mfa.code_at(person.totp_secret, datetime.now(UTC) + timedelta(seconds=30))
        response = await client.post(
            "/v1/auth/login/mfa", json={"mfa_token": body["mfa_token"], "code": code}
        )
        assert response.status_code == 200, response.text
        body = response.json()
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_demo_people_sign_in_as_printed(
    api_settings: Settings,
    db_pool: asyncpg.Pool,
    redis: Redis,
    api_client: httpx.AsyncClient,
) -> None:
    tenant = api_settings.demo_tenant
    await accounts.create_tenant(db_pool, tenant_id=tenant, name="Demo school")
    now = datetime.now(UTC)
    first = await demo_accounts.ensure_accounts(
        db_pool, redis, api_settings, tenant_id=tenant, learner_ids_in_order=REPLAYED, now=now
    )
    again = await demo_accounts.ensure_accounts(
        db_pool, redis, api_settings, tenant_id=tenant, learner_ids_in_order=REPLAYED, now=now
    )
    assert again == first  # idempotent: same accounts, same password, same TOTP secret
    assert await db_pool.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", tenant) == (
        len(REPLAYED) + 2
    )
    by_role = {p.role: p for p in first}
    learners = [p for p in first if p.role == "learner"]
    assert [p.learner_id for p in learners] == REPLAYED[: demo_accounts.SIGN_IN_LEARNERS]

    teacher = await _login(api_client, tenant, by_role["teacher"])
    classes = (await api_client.get("/v1/classes", headers=teacher)).json()
    assert [c["name"] for c in classes] == [demo_accounts.CLASS_NAME]
    overview = await api_client.get(
        f"/v1/dashboards/classes/{classes[0]['class_id']}", headers=teacher
    )
    assert overview.status_code == 200, overview.text
    assert sorted(row["learner_id"] for row in overview.json()["heatmap"]) == sorted(REPLAYED)

    learner = await _login(api_client, tenant, learners[0])
    mine = await api_client.get("/v1/dashboards/learners/me", headers=learner)
    assert mine.status_code == 200, mine.text
    assert mine.json()["learner_id"] == learners[0].learner_id

    operator = by_role["operator"]
    assert operator.otpauth_uri
    assert operator.totp_secret
    assert operator.totp_secret in operator.otpauth_uri
    signed_in = await _login(api_client, tenant, operator)
    for path in ("/v1/operator/fraud-alerts?status=open", "/v1/operator/pipeline"):
        response = await api_client.get(path, headers=signed_in)
        assert response.status_code == 200, (path, response.text)
