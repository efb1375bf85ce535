"""Placement tests over HTTP against real PostgreSQL, Redis and the broker.

Proves: a learner starts (or resumes) a test over the tenant's calibrated published
questions, answers until the CAT's stopping rule, and the result equals
scheduler.cat.result recomputed from the same answers; the result seeds
learner_ability and skill_mastery under the learner id (combining with stored ability,
leaving practised skills alone, dropping stale hot-cache fields), marks onboarding's
placement step, ends the Redis session and publishes a PlacementEvent. Answers out of
turn, repeated, off-choice, or to someone else's test are refused; an empty bank is 409.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from redis.asyncio import Redis

from api.services import placement, placement_cat
from api.services.principals import Role
from learnstream.events.v1 import placement_pb2
from learnstream.kafka import EVENT_TYPE_HEADER, Stream
from learnstream.settings import Settings
from learnstream.views.ability import DEFAULT_PRIOR
from scheduler import cat, irt
from tests.integration.api.conftest import SignedIn, sign_in
from tests.integration.api.seeding import calibrate, ensure_skill, publish_question
from tests.integration.ingest.support import read_topics

SKILLS = ("decimals", "fractions", "percent")
CHOICES = ["right", "wrong", "also wrong"]


def difficulty(skill: str, k: int) -> float:
    """Item difficulties spread over [-2, 2] logits, shifted a little per skill."""
    return -2.0 + 0.5 * k + 0.2 * SKILLS.index(skill)


@pytest.fixture
async def bank(db_pool: asyncpg.Pool, tenants: tuple[str, str]) -> list[placement_cat.BankItem]:
    """24 calibrated published questions in acme (8 per skill), one uncalibrated, one draft."""
    items = []
    for skill in SKILLS:
        await ensure_skill(db_pool, tenant_id="acme", skill_id=skill, name=skill.title())
        for k in range(8):
            item_id = f"{skill}-{k}"
            await publish_question(
                db_pool,
                tenant_id="acme",
                item_id=item_id,
                skill_id=skill,
                prompt=f"{skill} question {k}",
                choices=CHOICES,
                answer_key=["right"],
            )
            a, b = 1.0 + 0.1 * (k % 3), difficulty(skill, k)
            await calibrate(db_pool, tenant_id="acme", item_id=item_id, a=a, b=b)
            items.append(placement_cat.BankItem(item_id, skill, a, b, 0.0))
    # Published but not calibrated: never asked.
    await publish_question(
        db_pool,
        tenant_id="acme",
        item_id="uncalibrated",
        skill_id="fractions",
        prompt="?",
        choices=CHOICES,
        answer_key=["right"],
    )
    return sorted(items, key=lambda i: i.item_id)


async def learner(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, name: str = "ann"
) -> SignedIn:
    return await sign_in(
        client,
        pool,
        settings,
        tenant_id="acme",
        roles={Role.LEARNER},
        email_address=f"{name}@example.org",
    )


def knows(theta: float, items: dict[str, placement_cat.BankItem]) -> Callable[[str], bool]:
    """A learner of ability ``theta`` who gets exactly the items easier than theta right."""
    return lambda item_id: items[item_id].b < theta


async def take_test(
    client: httpx.AsyncClient, who: SignedIn, answer_right: Callable[[str], bool]
) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    started = await client.post("/v1/placement/sessions", headers=who.headers)
    assert started.status_code == 201, started.text
    body = started.json()
    given: list[tuple[str, bool]] = []
    while body["status"] == "in_progress":
        question = body["question"]
        assert question["choices"] == CHOICES
        correct = answer_right(question["item_id"])
        response = await client.post(
            f"/v1/placement/sessions/{body['placement_id']}/answers",
            headers=who.headers,
            json={"item_id": question["item_id"], "response": "right" if correct else "wrong"},
        )
        assert response.status_code == 200, response.text
        given.append((question["item_id"], correct))
        body = response.json()
    return body, given


def expected_result(
    bank: list[placement_cat.BankItem], given: list[tuple[str, bool]], settings: Settings
) -> cat.CatResult:
    index = {item.item_id: i for i, item in enumerate(bank)}
    state = cat.start(placement_cat.placement_config(bank, settings))
    for item_id, correct in given:
        state = cat.record_answer(state, index[item_id], correct)
    return cat.result(state, placement_cat.cat_bank(bank))


async def test_full_placement_seeds_state_and_publishes_the_event(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    topics: Settings,
    bank: list[placement_cat.BankItem],
) -> None:
    ann = await learner(api_client, db_pool, api_settings)
    by_id = {item.item_id: item for item in bank}

    first = await api_client.post("/v1/placement/sessions", headers=ann.headers)
    assert first.status_code == 201, first.text
    assert "answer_key" not in first.text
    resumed = await api_client.post("/v1/placement/sessions", headers=ann.headers)
    assert resumed.status_code == 200
    assert resumed.json()["placement_id"] == first.json()["placement_id"]
    assert resumed.json()["question"] == first.json()["question"]
    key = placement.session_key(api_settings, tenant_id="acme", user_id=ann.user.id)
    redis = Redis.from_url(api_settings.redis_url)
    try:
        ttl = await redis.ttl(key)
        assert 0 < ttl <= api_settings.placement_session_ttl_s
        await redis.delete(key)  # start over through the helper below

        done, given = await take_test(api_client, ann, knows(0.4, by_id))
        assert await redis.exists(key) == 0
    finally:
        await redis.aclose()

    assert done["status"] == "completed"
    assert "uncalibrated" not in {item_id for item_id, _ in given}
    assert len({item_id for item_id, _ in given}) == len(given)
    assert len(given) <= min(api_settings.placement_max_items, len(bank))
    expected = expected_result(bank, given, api_settings)
    result = done["result"]
    assert result["items_administered"] == len(given)
    assert result["correct"] == sum(correct for _, correct in given)
    assert result["ability"] == pytest.approx(expected.ability, abs=1e-9)
    assert result["ability_se"] == pytest.approx(expected.ability_se, abs=1e-9)
    assert expected.stop_reason is not None
    assert result["stop_reason"] == expected.stop_reason.value
    estimates = {s["skill_id"]: s["p_mastery"] for s in result["skill_estimates"]}
    assert estimates == pytest.approx(dict(expected.skill_mastery), abs=1e-9)
    assert sorted(result["seeded_skills"]) == sorted(SKILLS)
    # Content balancing spread the questions over the three skills.
    per_skill = {s: sum(by_id[i].skill_id == s for i, _ in given) for s in SKILLS}
    assert max(per_skill.values()) - min(per_skill.values()) <= 1

    ability = await db_pool.fetchrow(
        "SELECT * FROM learner_ability WHERE tenant_id = 'acme' AND user_id = $1", ann.user.id
    )
    assert ability is not None
    assert ability["ability"] == pytest.approx(expected.ability, abs=1e-9)
    assert ability["n_responses"] == len(given)
    assert str(ability["last_event_id"]) == done["placement_id"]
    rows = {
        r["skill_id"]: r
        for r in await db_pool.fetch(
            "SELECT * FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = $1", ann.user.id
        )
    }
    assert set(rows) == set(SKILLS)
    for skill in SKILLS:
        assert rows[skill]["p_mastery"] == pytest.approx(expected.skill_mastery[skill])
        assert rows[skill]["attempts"] == per_skill[skill]
        assert rows[skill]["correct"] == sum(c for i, c in given if by_id[i].skill_id == skill)
    onboarding = await api_client.get(f"/v1/learners/{ann.user.id}/onboarding", headers=ann.headers)
    steps = {s["step"]: s for s in onboarding.json()["steps"]}
    assert steps["placement"]["completed_at"] is not None
    assert steps["placement"]["skipped"] is False

    assert result["event_published"] is True
    records = await asyncio.to_thread(read_topics, topics, [Stream.PLACEMENTS], expected=1)
    assert len(records) == 1
    record = records[0]
    assert record.key == f"acme:{ann.user.id}".encode()
    assert record.headers[EVENT_TYPE_HEADER] == b"learnstream.events.v1.PlacementEvent"
    event = placement_pb2.PlacementEvent.FromString(record.value)
    assert event.envelope.event_id == event.placement_id == done["placement_id"]
    assert (event.envelope.tenant_id, event.envelope.user_id) == ("acme", ann.user.id)
    assert event.ability == pytest.approx(expected.ability)
    assert event.items_administered == len(given)
    assert {e.skill_id: e.p_mastery for e in event.skill_estimates} == pytest.approx(estimates)

    again = await api_client.get(
        f"/v1/placement/sessions/{done['placement_id']}", headers=ann.headers
    )
    assert again.status_code == 200
    assert again.json()["result"] == result
    late = await api_client.post(
        f"/v1/placement/sessions/{done['placement_id']}/answers",
        headers=ann.headers,
        json={"item_id": given[-1][0], "response": "right"},
    )
    assert late.status_code == 409


async def test_out_of_turn_off_choice_and_foreign_answers_are_refused(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    bank: list[placement_cat.BankItem],
) -> None:
    ann = await learner(api_client, db_pool, api_settings, "ann")
    bob = await learner(api_client, db_pool, api_settings, "bob")
    started = (await api_client.post("/v1/placement/sessions", headers=ann.headers)).json()
    url = f"/v1/placement/sessions/{started['placement_id']}"
    current = started["question"]["item_id"]
    other = next(i.item_id for i in bank if i.item_id != current)

    wrong_item = await api_client.post(
        f"{url}/answers", headers=ann.headers, json={"item_id": other, "response": "right"}
    )
    assert wrong_item.status_code == 409
    assert wrong_item.json()["errors"][0]["field"] == "body.item_id"
    off_choice = await api_client.post(
        f"{url}/answers", headers=ann.headers, json={"item_id": current, "response": "maybe"}
    )
    assert off_choice.status_code == 422
    assert off_choice.json()["errors"][0]["field"] == "body.response"
    for method in ("GET", "POST"):
        foreign = await api_client.request(
            method,
            url if method == "GET" else f"{url}/answers",
            headers=bob.headers,
            json=None if method == "GET" else {"item_id": current, "response": "right"},
        )
        assert foreign.status_code == 404, foreign.text

    # The same answer sent twice at once is counted once.
    twice = await asyncio.gather(
        *(
            api_client.post(
                f"{url}/answers",
                headers=ann.headers,
                json={"item_id": current, "response": "right"},
            )
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in twice) == [200, 409]
    state = (await api_client.get(url, headers=ann.headers)).json()
    assert state["answered"] == 1

    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    refused = await api_client.post("/v1/placement/sessions", headers=teacher.headers)
    assert refused.status_code == 403


async def test_seeds_combine_with_stored_ability_and_keep_practised_skills(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    topics: Settings,
    bank: list[placement_cat.BankItem],
) -> None:
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    ann = await learner(api_client, db_pool, api_settings)
    mapped = await api_client.put(
        f"/v1/users/{ann.user.id}/learner-id", headers=admin.headers, json={"learner_id": "stu-42"}
    )
    assert mapped.status_code == 200, mapped.text
    assert mapped.json()["learner_id"] == "stu-42"
    # Earlier practice under the app's id: two answers on calibrated items, one skill row.
    before = irt.initial_posterior(DEFAULT_PRIOR)
    for item, score in ((bank[0], 1.0), (bank[5], 0.0)):
        before = irt.update_posterior(before, item.a, item.b, item.c, score)
    stored = irt.summarize(before)
    event_id = uuid.uuid4()
    now = datetime.now(UTC)
    await db_pool.execute(
        """
        INSERT INTO learner_ability (tenant_id, user_id, ability, ability_se, n_responses,
            prior_mean, prior_sd, log_density, last_event_id, last_attempt_at, version)
        VALUES ('acme', 'stu-42', $1, $2, 2, 0, 1, $3, $4, $5, 7)
        """,
        stored.ability,
        stored.ability_se,
        before.log_density.tolist(),
        event_id,
        now,
    )
    await db_pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at, version)
        VALUES ('acme', 'stu-42', 'fractions', 0.33, 7, 3, $1, $2, 4)
        """,
        event_id,
        now,
    )
    redis = Redis.from_url(api_settings.redis_url)
    cache_key = f"{api_settings.redis_namespace}:learner:acme:stu-42"
    try:
        await redis.hset(
            cache_key,
            mapping={"ability": b"{}", "mastery:decimals": b"{}", "mastery:fractions": b"{}"},
        )
        by_id = {item.item_id: item for item in bank}
        done, given = await take_test(api_client, ann, knows(-0.6, by_id))
        assert sorted(await redis.hkeys(cache_key)) == [b"mastery:fractions"]
    finally:
        await redis.aclose()

    result = done["result"]
    assert result["learner_id"] == "stu-42"
    assert sorted(result["seeded_skills"]) == ["decimals", "percent"]
    expected = before
    for item_id, correct in given:
        item = by_id[item_id]
        expected = irt.update_posterior(expected, item.a, item.b, item.c, float(correct))
    row = await db_pool.fetchrow(
        "SELECT * FROM learner_ability WHERE tenant_id = 'acme' AND user_id = 'stu-42'"
    )
    assert row["n_responses"] == 2 + len(given)
    assert row["version"] == 8
    assert row["ability"] == pytest.approx(irt.summarize(expected).ability, abs=1e-9)
    assert row["ability_se"] == pytest.approx(irt.summarize(expected).ability_se, abs=1e-9)
    assert np.max(np.asarray(row["log_density"])) == pytest.approx(0.0)
    fractions = await db_pool.fetchrow(
        "SELECT * FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = 'stu-42' "
        "AND skill_id = 'fractions'"
    )
    assert (fractions["p_mastery"], fractions["attempts"], fractions["version"]) == (0.33, 7, 4)
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM skill_mastery WHERE tenant_id = 'acme' AND user_id = $1",
            ann.user.id,
        )
        == 0
    )
    records = await asyncio.to_thread(read_topics, topics, [Stream.PLACEMENTS], expected=1)
    event = placement_pb2.PlacementEvent.FromString(records[0].value)
    assert event.envelope.user_id == "stu-42"
    assert records[0].key == b"acme:stu-42"


async def test_tenant_without_calibrated_questions_gets_409(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    bank: list[placement_cat.BankItem],
) -> None:
    other = await sign_in(
        api_client, db_pool, api_settings, tenant_id="globex", roles={Role.LEARNER}
    )
    response = await api_client.post("/v1/placement/sessions", headers=other.headers)
    assert response.status_code == 409
    assert "calibrated" in response.json()["detail"]
    # acme's bank is not globex's: nothing of it leaks into the answer.
    assert "fractions" not in response.text
