"""The CMS side of xAPI statements in: activity ids mapped to items, and the unmapped policy.

What ingest then does with them is tests/integration/ingest/test_xapi.py.
"""

from __future__ import annotations

import asyncpg
import httpx

from tests.integration.api.conftest import SignedIn
from tests.integration.api.test_content import staff  # noqa: F401  (fixture)

ACTIVITY = "https://courses.example.org/xblock/block-v1:Org+Math+2026+type@problem+block@q1"


async def test_authors_map_activities_and_set_the_policy(
    api_client: httpx.AsyncClient,
    staff: dict[str, SignedIn],  # noqa: F811
    db_pool: asyncpg.Pool,
) -> None:
    author = staff["author"].headers
    mapping = {
        "activity_id": ACTIVITY,
        "item_id": "q-half",
        "item_version": 2,
        "skill_ids": ["fractions", "ratios"],
    }
    put = await api_client.put(
        "/v1/xapi/activities", headers=author, json={"activities": [mapping]}
    )
    assert put.status_code == 204, put.text
    again = await api_client.put(
        "/v1/xapi/activities",
        headers=author,
        json={"activities": [{**mapping, "skill_ids": ["percent"]}]},
    )
    assert again.status_code == 204
    listed = await api_client.get("/v1/xapi/activities", headers=staff["reviewer"].headers)
    assert [{k: v for k, v in m.items() if k != "updated_at"} for m in listed.json()] == [
        {**mapping, "skill_ids": ["percent"]}
    ]
    # Another tenant sees nothing of acme's mapping.
    other = await api_client.get("/v1/xapi/activities", headers=staff["other_author"].headers)
    assert other.json() == []

    unknown_skill = await api_client.put(
        "/v1/xapi/activities",
        headers=author,
        json={"activities": [{**mapping, "skill_ids": ["no-such-skill"]}]},
    )
    assert unknown_skill.status_code == 422
    assert "no-such-skill" in unknown_skill.json()["detail"]

    assert (await api_client.get("/v1/xapi/settings", headers=author)).json() == {
        "unmapped": "store"
    }
    refuse = await api_client.put("/v1/xapi/settings", headers=author, json={"unmapped": "refuse"})
    assert refuse.json() == {"unmapped": "refuse"}
    assert (
        await db_pool.fetchval("SELECT unmapped FROM xapi_settings WHERE tenant_id = 'acme'")
        == "refuse"
    )

    deleted = await api_client.delete(
        "/v1/xapi/activities", params={"activity_id": ACTIVITY}, headers=author
    )
    assert deleted.status_code == 204
    gone = await api_client.delete(
        "/v1/xapi/activities", params={"activity_id": ACTIVITY}, headers=author
    )
    assert gone.status_code == 404
