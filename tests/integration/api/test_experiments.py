"""The experiment routes over HTTP on real PostgreSQL: define, start, stop, read out.

Proves: a draft is stored with its variants in order; bad variants are refused naming
``body.variants``; a second running experiment of the same target is refused (409); the
read-out names the method and gives one arm per variant (control first) from the
counts the analytics processor stored, with the always-valid p-value never above the
stored one; stop ends it; another tenant's admin cannot see it (404); the analytics
route answers teachers with empty lists when nothing was recommended.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import httpx

from api.services.principals import Role
from learnstream.settings import Settings
from tests.integration.api.conftest import sign_in

BODY = {
    "name": "review sessions",
    "variants": [
        {"name": "control", "weight": 1, "strategy": "bandit"},
        {"name": "review", "weight": 1, "strategy": "review"},
    ],
    "target_metric": "click",
    "minimum_sample": 100,
}


async def test_experiment_lifecycle_and_read_out(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    other = await sign_in(api_client, db_pool, api_settings, tenant_id="globex", roles={Role.ADMIN})
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    h = admin.headers
    bad = {**BODY, "variants": [BODY["variants"][0], BODY["variants"][0]]}  # type: ignore[index]
    refused = await api_client.post("/v1/experiments", json=bad, headers=h)
    assert refused.status_code == 422, refused.text
    assert "body.variants" in refused.text
    created = await api_client.post("/v1/experiments", json=BODY, headers=h)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["status"] == "draft"
    assert [v["name"] for v in first["variants"]] == ["control", "review"]
    second = (await api_client.post("/v1/experiments", json=BODY, headers=h)).json()
    path = f"/v1/experiments/{first['experiment_id']}"
    started = await api_client.post(f"{path}/start", headers=h)
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    clash = await api_client.post(f"/v1/experiments/{second['experiment_id']}/start", headers=h)
    assert clash.status_code == 409, clash.text
    # What the analytics processor stores after a look.
    for variant, exposed, converted, p in (("control", 1000, 300, 1.0), ("review", 1000, 380, 0.2)):
        await db_pool.execute(
            "INSERT INTO experiment_results (tenant_id, experiment_id, variant, exposed, "
            "converted, p_value, looks, looked_at) VALUES ('acme', $1, $2, $3, $4, $5, 3, $6)",
            uuid.UUID(first["experiment_id"]),
            variant,
            exposed,
            converted,
            p,
            datetime.now(UTC),
        )
    read = await api_client.get(f"{path}/results", headers=h)
    assert read.status_code == 200, read.text
    body = read.json()
    assert "mSPRT" in body["method"]
    assert body["looks"] == 3
    control, review = body["arms"]
    assert (control["verdict"], review["verdict"]) == ("control", "better")
    assert abs(review["lift"] - 0.08) < 1e-9
    assert 0 < review["p_value"] <= 0.05
    assert review["ci_low"] > 0
    assert (await api_client.get(path, headers=other.headers)).status_code == 404
    stopped = await api_client.post(f"{path}/stop", headers=h)
    assert stopped.json()["status"] == "stopped"
    assert (await api_client.post(f"{path}/stop", headers=h)).status_code == 409
    listed = await api_client.get("/v1/experiments", headers=h)
    assert {e["experiment_id"] for e in listed.json()} == {
        first["experiment_id"],
        second["experiment_id"],
    }
    analytics = await api_client.get("/v1/analytics/recommendations", headers=teacher.headers)
    assert analytics.status_code == 200, analytics.text
    assert analytics.json() == {"by_strategy": [], "by_variant": []}
