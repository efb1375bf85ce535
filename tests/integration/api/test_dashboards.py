"""Dashboards, recommendation feedback, the learner-id mapping and operator views over HTTP,
against real PostgreSQL, Redis and the broker.

Proves: the learner dashboard reads every view under the account's learner id (never
under the raw account id once an admin mapped it) with labels, open gaps by severity,
due reviews, a daily trend, streaks, milestones and a class percentile that is withheld
in small classes; the class overview gives the heat map, per-skill counts, learners at
risk with reasons and common gaps to the class's teacher only; feedback is stored and
published as a UserActivityEvent; recommendations and the inbox come from their views
when those exist; mapping conflicts are refused and erasure follows the mapping;
operators list, page and review fraud alerts of their own tenant only; pipeline
health compares committed offsets with the broker's end offsets and reads workers'
/metrics pages.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from redis.asyncio import Redis

from api.app import create_app
from api.services.mastery import mastery_label
from api.services.principals import Role
from infra import services
from learnstream.events.v1 import activity_pb2
from learnstream.kafka import EVENT_ID_HEADER, Stream, client_config
from learnstream.settings import Settings
from tests.integration.api.conftest import SignedIn, sign_in
from tests.integration.api.seeding import ensure_skill, publish_question
from tests.integration.ingest.support import read_topics

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class School:
    admin: SignedIn
    teacher: SignedIn
    learners: list[SignedIn]  # learners[0] is mapped to learner id "stu-1"
    class_id: str


async def add_mastery(
    pool: asyncpg.Pool, learner_id: str, skill_id: str, p: float, attempts: int, correct: int
) -> None:
    await pool.execute(
        """
        INSERT INTO skill_mastery (tenant_id, user_id, skill_id, p_mastery, attempts, correct,
                                   last_event_id, last_attempt_at)
        VALUES ('acme', $1, $2, $3, $4, $5, $6, $7)
        """,
        learner_id,
        skill_id,
        p,
        attempts,
        correct,
        uuid.uuid4(),
        NOW - timedelta(hours=1),
    )


async def add_gap(
    pool: asyncpg.Pool, learner_id: str, skill_id: str, status: str, sev: float
) -> None:
    await pool.execute(
        """
        INSERT INTO knowledge_gaps (tenant_id, user_id, skill_id, status, severity, confidence,
            p_mastery, attempts, blocked_skills, last_evidence_at, opened_at, last_event_id)
        VALUES ('acme', $1, $2, $3, $4, 0.8, 0.3, 5, 1, $5, $5, $6)
        """,
        learner_id,
        skill_id,
        status,
        sev,
        NOW - timedelta(days=1),
        uuid.uuid4(),
    )


async def add_review(pool: asyncpg.Pool, learner_id: str, item_id: str, due_at: datetime) -> None:
    await pool.execute(
        """
        INSERT INTO review_schedule (tenant_id, user_id, item_id, algorithm, state, due_at,
                                     reviews, last_event_id, last_reviewed_at)
        VALUES ('acme', $1, $2, 'fsrs', '{}', $3, 2, $4, $5)
        """,
        learner_id,
        item_id,
        due_at,
        uuid.uuid4(),
        NOW - timedelta(days=3),
    )


async def add_attempts(
    pool: asyncpg.Pool, learner_id: str, times: list[tuple[datetime, bool]]
) -> None:
    for moment in {t.replace(day=1, hour=0, minute=0, second=0) for t, _ in times}:
        await pool.execute("SELECT attempts_ensure_partition($1)", moment)
    for n, (moment, correct) in enumerate(times):
        await pool.execute(
            """
            INSERT INTO attempts (tenant_id, event_id, user_id, item_id, skill_ids, correct,
                score, occurred_at, source_topic, kafka_partition, kafka_offset)
            VALUES ('acme', $1, $2, 'q-frac', '{fractions}', $3, $4, $5, 't', 0, $6)
            """,
            uuid.uuid4(),
            learner_id,
            correct,
            1.0 if correct else 0.0,
            moment,
            n,
        )


@pytest.fixture
async def school(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> School:
    """acme: an admin, a teacher, six learners in class 7B (the first mapped to "stu-1")."""
    admin = await sign_in(api_client, db_pool, api_settings, tenant_id="acme", roles={Role.ADMIN})
    teacher = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.TEACHER}
    )
    learners = [
        await sign_in(
            api_client,
            db_pool,
            api_settings,
            tenant_id="acme",
            roles={Role.LEARNER},
            email_address=f"learner{n}@example.org",
        )
        for n in range(6)
    ]
    created = await api_client.post("/v1/classes", json={"name": "7B"}, headers=teacher.headers)
    class_id = created.json()["class_id"]
    for member in learners:
        added = await api_client.post(
            f"/v1/classes/{class_id}/members",
            json={"user_id": member.user.id, "member_role": "learner"},
            headers=admin.headers,  # membership is an admin's call (issue 12, L2)
        )
        assert added.status_code == 200, added.text
    mapped = await api_client.put(
        f"/v1/users/{learners[0].user.id}/learner-id",
        json={"learner_id": "stu-1"},
        headers=admin.headers,
    )
    assert mapped.status_code == 200, mapped.text
    for skill_id, name in (("fractions", "Fractions"), ("decimals", "Decimals")):
        await ensure_skill(db_pool, tenant_id="acme", skill_id=skill_id, name=name)
    await publish_question(
        db_pool,
        tenant_id="acme",
        item_id="q-frac",
        skill_id="fractions",
        prompt="1/2 + 1/4?",
        choices=["3/4", "2/6"],
        answer_key=["3/4"],
        title="Adding fractions",
    )
    # Learner 0 ("stu-1"): mean mastery (0.97 + 0.31) / 2 = 0.64.
    await add_mastery(db_pool, "stu-1", "fractions", 0.97, 12, 11)
    await add_mastery(db_pool, "stu-1", "decimals", 0.31, 4, 1)
    # A row under the raw account id belongs to nobody once the account is mapped.
    await add_mastery(db_pool, learners[0].user.id, "percent", 0.5, 3, 1)
    for member, p in zip(learners[1:], (0.2, 0.4, 0.5, 0.8, 0.9), strict=True):
        await add_mastery(db_pool, member.user.id, "fractions", p, 10, 5)
    await add_gap(db_pool, "stu-1", "decimals", "open", 0.7)
    await add_gap(db_pool, "stu-1", "fractions", "clear", 0.0)
    await add_gap(db_pool, learners[1].user.id, "decimals", "open", 0.4)
    await add_gap(db_pool, learners[1].user.id, "fractions", "open", 0.9)
    return School(admin, teacher, learners, class_id)


async def test_learner_dashboard_reads_every_view_under_the_learner_id(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, school: School
) -> None:
    ann = school.learners[0]
    await add_review(db_pool, "stu-1", "q-frac", NOW - timedelta(days=2))
    await add_review(db_pool, "stu-1", "q-gone", NOW - timedelta(hours=5))
    await add_review(db_pool, "stu-1", "q-soon", NOW + timedelta(hours=3))
    await add_review(db_pool, "stu-1", "q-later", NOW + timedelta(days=3))
    # Answers on the last four days, today included: a 4-day streak; 12 answers in all.
    today = NOW.replace(hour=0, minute=30)
    answered = [
        (today - timedelta(days=d, minutes=-k), k % 3 != 0) for d in range(4) for k in range(3)
    ]
    await add_attempts(db_pool, "stu-1", sorted(answered))

    response = await api_client.get("/v1/dashboards/learners/me", headers=ann.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user_id"], body["learner_id"]) == (ann.user.id, "stu-1")
    skills = {s["skill_id"]: s for s in body["mastery"]}
    assert set(skills) == {"decimals", "fractions"}  # not the row under the account id
    assert skills["fractions"]["name"] == "Fractions"
    assert skills["fractions"]["label"] == mastery_label(0.97, 12).value == "mastered"
    assert skills["decimals"]["label"] == mastery_label(0.31, 4).value
    assert body["mean_p_mastery"] == pytest.approx(0.64)
    assert body["label_counts"] == {"mastered": 1, "practising": 1}
    assert [(g["skill_id"], g["band"]) for g in body["gaps"]] == [("decimals", "high")]
    due = body["due_reviews"]
    assert (due["due_now"], due["due_next_24h"]) == (2, 1)
    assert [(r["item_id"], r["title"]) for r in due["items"]] == [
        ("q-frac", "Adding fractions"),
        ("q-gone", None),
    ]
    trend = body["trend"]
    assert trend["last_day"] == today.date().isoformat()
    assert len(trend["days"]) == 30
    recent = trend["days"][-4:]
    assert [d["attempts"] for d in recent] == [3, 3, 3, 3]
    assert all(d["accuracy"] == pytest.approx(2 / 3) for d in recent)
    assert all(d["attempts"] == 0 and d["accuracy"] is None for d in trend["days"][:-4])
    assert body["streak"] == {
        "current_days": 4,
        "longest_days": 4,
        "active_days": 4,
        "last_active_on": today.date().isoformat(),
    }
    milestones = {m["key"]: m for m in body["milestones"]}
    tenth = sorted(answered)[9][0]
    assert milestones["answers_10"]["achieved"] is True
    assert datetime.fromisoformat(milestones["answers_10"]["achieved_at"]) == tenth
    assert milestones["answers_50"]["progress"] == 12
    assert milestones["mastered_1"]["achieved"] is True
    assert milestones["streak_3"]["achieved"] is True
    assert milestones["streak_7"]["achieved"] is False
    (standing,) = body["class_standing"]
    # 0.64 among [0.2, 0.4, 0.5, 0.64, 0.8, 0.9]: three below -> (3 + 0.5) / 6.
    assert standing["available"] is True
    assert standing["percentile"] == pytest.approx(58.3)
    assert standing["learners_compared"] == 6
    for other in school.learners[1:]:
        assert other.user.id not in response.text  # classmates are never named
    assert body["placement"] is None

    # A teacher of the class drills down; the same numbers come back.
    drill = await api_client.get(
        f"/v1/dashboards/learners/{ann.user.id}", headers=school.teacher.headers
    )
    assert drill.status_code == 200
    assert drill.json()["mastery"] == body["mastery"]


async def test_standing_is_withheld_in_a_small_class(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, school: School
) -> None:
    small = await api_client.post(
        "/v1/classes", json={"name": "duo"}, headers=school.teacher.headers
    )
    for member in school.learners[:2]:
        await api_client.post(
            f"/v1/classes/{small.json()['class_id']}/members",
            json={"user_id": member.user.id, "member_role": "learner"},
            headers=school.admin.headers,
        )
    body = (
        await api_client.get("/v1/dashboards/learners/me", headers=school.learners[0].headers)
    ).json()
    by_name = {s["class_name"]: s for s in body["class_standing"]}
    assert by_name["duo"]["available"] is False
    assert by_name["duo"]["percentile"] is None
    assert by_name["7B"]["available"] is True


async def test_class_overview_for_its_teacher_only(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, api_settings: Settings, school: School
) -> None:
    for n in range(25):  # learner 1: many overdue reviews
        await add_review(db_pool, school.learners[1].user.id, f"i{n}", NOW - timedelta(days=1))
    response = await api_client.get(
        f"/v1/dashboards/classes/{school.class_id}", headers=school.teacher.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["learners"] == 6
    assert [s["skill_id"] for s in body["skills"]] == ["decimals", "fractions"]
    rows = {r["user_id"]: r for r in body["heatmap"]}
    first = rows[school.learners[0].user.id]
    assert first["learner_id"] == "stu-1"
    assert first["p_mastery"] == [0.31, 0.97]
    assert first["labels"] == ["practising", "mastered"]
    assert rows[school.learners[2].user.id]["p_mastery"] == [None, 0.4]
    fractions = body["skills"][1]
    assert fractions["learners_with_evidence"] == 6
    assert fractions["mean_p_mastery"] == pytest.approx((0.97 + 0.2 + 0.4 + 0.5 + 0.8 + 0.9) / 6)
    assert sum(fractions["label_counts"].values()) == 6
    at_risk = {r["user_id"]: r["reasons"] for r in body["at_risk"]}
    assert at_risk[school.learners[1].user.id] == [
        "1 severe knowledge gap: fractions",
        "low mastery: mean 0.20 after 10 answers",
        "25 reviews overdue",
    ]
    assert at_risk[school.learners[0].user.id] == ["1 severe knowledge gap: decimals"]
    assert [(g["skill_id"], g["learners"]) for g in body["common_gaps"]] == [
        ("decimals", 2),
        ("fractions", 1),
    ]
    # The older class mastery view follows the mapping as well.
    mastery = await api_client.get(
        f"/v1/classes/{school.class_id}/mastery", headers=school.teacher.headers
    )
    by_user = {r["user_id"]: r["skills"] for r in mastery.json()["learners"]}
    assert [s["skill_id"] for s in by_user[school.learners[0].user.id]] == ["decimals", "fractions"]

    other_teacher = await sign_in(
        api_client,
        db_pool,
        api_settings,
        tenant_id="acme",
        roles={Role.TEACHER},
        email_address="other.teacher@example.org",
    )
    for path in (
        f"/v1/dashboards/classes/{school.class_id}",
        f"/v1/dashboards/learners/{school.learners[0].user.id}",
    ):
        refused = await api_client.get(path, headers=other_teacher.headers)
        assert refused.status_code == 403, path
    learner_view = await api_client.get(
        f"/v1/dashboards/classes/{school.class_id}", headers=school.learners[0].headers
    )
    assert learner_view.status_code == 403


async def test_feedback_is_stored_published_and_shown(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, topics: Settings, school: School
) -> None:
    ann = school.learners[0]
    url = "/v1/dashboards/learners/me/recommendations/q-frac/feedback"
    given = await api_client.post(
        url, json={"verdict": "helpful", "comment": "clear"}, headers=ann.headers
    )
    assert given.status_code == 201, given.text
    stored = given.json()
    assert (stored["verdict"], stored["event_published"]) == ("helpful", True)
    row = await db_pool.fetchrow("SELECT * FROM recommendation_feedback")
    assert (str(row["user_id"]), row["learner_id"], row["item_id"]) == (
        ann.user.id,
        "stu-1",
        "q-frac",
    )
    assert row["event_published_at"] is not None

    records = await asyncio.to_thread(read_topics, topics, [Stream.ACTIVITY], expected=1)
    assert len(records) == 1
    assert records[0].key == b"acme:stu-1"
    assert records[0].headers[EVENT_ID_HEADER] == stored["feedback_id"].encode()
    event = activity_pb2.UserActivityEvent.FromString(records[0].value)
    assert event.kind == activity_pb2.ACTIVITY_KIND_RECOMMENDATION_FEEDBACK
    assert (event.resource_id, dict(event.attributes)) == (
        "q-frac",
        {"verdict": "helpful", "comment": "clear"},
    )

    unknown = await api_client.post(
        "/v1/dashboards/learners/me/recommendations/nope/feedback",
        json={"verdict": "done"},
        headers=ann.headers,
    )
    assert unknown.status_code == 404
    bad = await api_client.post(url, json={"verdict": "meh"}, headers=ann.headers)
    assert bad.status_code == 422
    teacher = await api_client.post(
        f"/v1/dashboards/learners/{ann.user.id}/recommendations/q-frac/feedback",
        json={"verdict": "done"},
        headers=school.teacher.headers,
    )
    assert teacher.status_code == 403  # teachers read, they do not speak for learners
    dashboard = (await api_client.get("/v1/dashboards/learners/me", headers=ann.headers)).json()
    assert [(f["item_id"], f["verdict"]) for f in dashboard["feedback"]] == [("q-frac", "helpful")]


async def test_recommendations_and_inbox_come_from_their_views(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, school: School
) -> None:
    ann = school.learners[0]
    await db_pool.execute(
        """
        INSERT INTO recommendations (tenant_id, user_id, rank, item_id, kind, skill_ids, score,
            reason, reason_detail, strategy, bucket, cause_event_id, computed_at)
        VALUES ('acme', 'stu-1', 1, 'q-frac', 'question', '{fractions}', 0.9, 'due_review',
                'due 2 days ago', 'review', 'b', $1, $2)
        """,
        uuid.uuid4(),
        NOW,
    )
    notification_id = uuid.uuid4()
    for nid, deliver_after in (
        (notification_id, NOW - timedelta(hours=1)),
        (uuid.uuid4(), NOW + timedelta(hours=8)),
    ):
        await db_pool.execute(
            """
            INSERT INTO notifications (notification_id, tenant_id, user_id, kind, title, body,
                channels, cause_event_id, created_at, deliver_after)
            VALUES ($1, 'acme', 'stu-1', 'review_due', 'Reviews due', '2 items', '{in_app}',
                    $2, $3, $4)
            """,
            nid,
            uuid.uuid4(),
            NOW - timedelta(hours=2),
            deliver_after,
        )
    await api_client.post(
        "/v1/dashboards/learners/me/recommendations/q-frac/feedback",
        json={"verdict": "done"},
        headers=ann.headers,
    )
    body = (await api_client.get("/v1/dashboards/learners/me", headers=ann.headers)).json()
    recommendations, inbox = body["recommendations"], body["notifications"]
    assert recommendations["available"] is True
    assert inbox["available"] is True
    (first,) = recommendations["items"]
    assert (first["item_id"], first["title"], first["reason"]) == (
        "q-frac",
        "Adding fractions",
        "due_review",
    )
    assert first["feedback"] == "done"
    # The one inside quiet hours (deliver_after later) is not shown yet.
    assert [n["notification_id"] for n in inbox["items"]] == [str(notification_id)]
    assert inbox["unread"] == 1
    read = await api_client.post(
        f"/v1/dashboards/learners/me/notifications/{notification_id}/read", headers=ann.headers
    )
    assert read.status_code == 200
    again = await api_client.post(
        f"/v1/dashboards/learners/me/notifications/{notification_id}/read", headers=ann.headers
    )
    assert again.json()["read_at"] == read.json()["read_at"]
    after = (await api_client.get("/v1/dashboards/learners/me", headers=ann.headers)).json()
    assert after["notifications"]["unread"] == 0
    foreign = await api_client.post(
        f"/v1/dashboards/learners/me/notifications/{notification_id}/read",
        headers=school.learners[1].headers,
    )
    assert foreign.status_code == 404


async def test_inbox_lists_only_the_newest_review_digest(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, school: School
) -> None:
    """A digest per past day would repeat "N reviews due" lines: the newest supersedes."""
    ann = school.learners[0]
    digests = [uuid.uuid4() for _ in range(3)]
    milestone = uuid.uuid4()
    rows = [(nid, "review_due", f"{10 + n} reviews due", n) for n, nid in enumerate(digests)]
    rows.append((milestone, "milestone", "5 skills mastered", 1))
    for nid, kind, title, days_ago in rows:
        await db_pool.execute(
            """
            INSERT INTO notifications (notification_id, tenant_id, user_id, kind, title, body,
                channels, cause_event_id, created_at, deliver_after)
            VALUES ($1, 'acme', 'stu-1', $2, $3, '', '{in_app}', $4, $5, $5)
            """,
            nid,
            kind,
            title,
            uuid.uuid4(),
            NOW - timedelta(days=days_ago, hours=1),
        )
    inbox = (await api_client.get("/v1/dashboards/learners/me", headers=ann.headers)).json()[
        "notifications"
    ]
    assert [(n["notification_id"], n["title"]) for n in inbox["items"]] == [
        (str(digests[0]), "10 reviews due"),
        (str(milestone), "5 skills mastered"),
    ]
    assert inbox["unread"] == 2


async def test_learner_id_mapping_rules_and_erasure_follow_it(
    api_client: httpx.AsyncClient, db_pool: asyncpg.Pool, api_settings: Settings, school: School
) -> None:
    admin = school.admin.headers
    taken = await api_client.put(
        f"/v1/users/{school.learners[1].user.id}/learner-id",
        json={"learner_id": "stu-1"},
        headers=admin,
    )
    assert taken.status_code == 409
    # Another account's (default) id is taken as well.
    clash = await api_client.put(
        f"/v1/users/{school.learners[1].user.id}/learner-id",
        json={"learner_id": school.learners[2].user.id},
        headers=admin,
    )
    assert clash.status_code == 409
    spaces = await api_client.put(
        f"/v1/users/{school.learners[1].user.id}/learner-id",
        json={"learner_id": "a b"},
        headers=admin,
    )
    assert spaces.status_code == 422
    shown = await api_client.get(
        f"/v1/users/{school.learners[1].user.id}/learner-id", headers=admin
    )
    assert shown.json()["learner_id"] == school.learners[1].user.id

    ns = api_settings.redis_namespace
    erased_keys = [
        f"{ns}:learner:acme:stu-1",
        f"{ns}:placement:acme:{school.learners[0].user.id}",
    ]
    # Erasure deletes the learner's keys by exact name (issue 12, L8): never "stu-10",
    # never another tenant's "stu-1", and no key outside the learner key scheme that
    # merely contains the id (a pattern match would reach those).
    kept_keys = [
        f"{ns}:learner:acme:stu-10",
        f"{ns}:learner:globex:stu-1",
        f"{ns}:x:acme:stu-1:extra",
    ]
    redis = Redis.from_url(api_settings.redis_url)
    try:
        for key in erased_keys + kept_keys:
            await redis.set(key, b"1")
        erased = await api_client.post(
            f"/v1/learners/{school.learners[0].user.id}/privacy/erasure",
            json={"confirm": True},
            headers=admin,
        )
        assert erased.status_code == 200, erased.text
        assert [await redis.exists(k) for k in erased_keys] == [0, 0]
        assert [await redis.exists(k) for k in kept_keys] == [1, 1, 1]
    finally:
        await redis.aclose()
    assert erased.json()["rows_deleted"]["skill_mastery"] == 3  # two under stu-1, one under the id
    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery WHERE user_id = 'stu-1'") == 0
    assert (
        await db_pool.fetchval("SELECT count(*) FROM knowledge_gaps WHERE user_id = 'stu-1'") == 0
    )
    tombstones = {
        r["subject_id"] for r in await db_pool.fetch("SELECT subject_id FROM privacy_tombstones")
    }
    assert tombstones == {"stu-1", school.learners[0].user.id}


async def add_fraud(
    pool: asyncpg.Pool, tenant: str, subject: str, score: float, at: datetime
) -> None:
    await pool.execute(
        """
        INSERT INTO fraud_signals (tenant_id, subject_kind, subject_id, user_id, occurred_at, score,
            w_rapid_response, reasons, flagged, last_cause_id)
        VALUES ($1, 'attempt', $2, 'stu-9', $3, $4, 0.9, $5, $6, 'c')
        """,
        tenant,
        subject,
        at,
        score,
        '[{"signal": "velocity", "weight": 0.3, "detail": "9/min"},'
        ' {"signal": "rapid_response", "weight": 0.9, "detail": "answered in 0.8 s"}]',
        score >= 0.8,
    )


async def test_operator_reviews_fraud_alerts_of_their_tenant(
    api_client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    api_settings: Settings,
    tenants: tuple[str, str],
) -> None:
    operator = await sign_in(
        api_client, db_pool, api_settings, tenant_id="acme", roles={Role.OPERATOR}
    )
    other = await sign_in(
        api_client, db_pool, api_settings, tenant_id="globex", roles={Role.OPERATOR}
    )
    for n, score in enumerate((0.95, 0.85, 0.5)):
        await add_fraud(db_pool, "acme", f"a{n}", score, NOW - timedelta(minutes=n))
    await add_fraud(db_pool, "globex", "g0", 0.99, NOW)

    page1 = await api_client.get("/v1/operator/fraud-alerts?limit=1", headers=operator.headers)
    assert page1.status_code == 200, page1.text
    (first,) = page1.json()["items"]
    assert first["subject_id"] == "a0"
    assert [r["signal"] for r in first["reasons"]] == ["rapid_response", "velocity"]
    page2 = await api_client.get(
        f"/v1/operator/fraud-alerts?limit=1&cursor={page1.json()['next_cursor']}",
        headers=operator.headers,
    )
    assert [a["subject_id"] for a in page2.json()["items"]] == ["a1"]  # a2 is below the threshold

    reviewed = await api_client.post(
        "/v1/operator/fraud-alerts/attempt/a0/review",
        json={"decision": "dismissed", "note": "fast but fine"},
        headers=operator.headers,
    )
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["review"]["decision"] == "dismissed"
    assert reviewed.json()["review"]["reviewed_by"] == operator.user.id
    open_now = await api_client.get("/v1/operator/fraud-alerts", headers=operator.headers)
    assert [a["subject_id"] for a in open_now.json()["items"]] == ["a1"]
    dismissed = await api_client.get(
        "/v1/operator/fraud-alerts?status=dismissed", headers=operator.headers
    )
    assert [a["subject_id"] for a in dismissed.json()["items"]] == ["a0"]
    audited = await db_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'fraud_alert_reviewed' AND target_id = 'a0'"
    )
    assert audited == 1

    for caller, path in (
        (other, "/v1/operator/fraud-alerts/attempt/a1/review"),
        (operator, "/v1/operator/fraud-alerts/attempt/a2/review"),  # not flagged
        (operator, "/v1/operator/fraud-alerts/attempt/g0/review"),  # another tenant's
    ):
        refused = await api_client.post(
            path, json={"decision": "confirmed"}, headers=caller.headers
        )
        assert refused.status_code == 404, path
    theirs = await api_client.get("/v1/operator/fraud-alerts?status=all", headers=other.headers)
    assert [a["subject_id"] for a in theirs.json()["items"]] == ["g0"]
    forged = await api_client.get("/v1/operator/fraud-alerts?cursor=Zm9v", headers=operator.headers)
    assert forged.status_code == 422


async def test_pipeline_health_compares_commits_with_the_broker_and_reads_worker_gauges(
    db_pool: asyncpg.Pool, api_settings: Settings, topics: Settings, tenants: tuple[str, str]
) -> None:
    attempts_topic = topics.topic(Stream.ATTEMPTS)
    producer = Producer({**client_config(topics), "linger.ms": 0})
    for n in range(7):  # one record per batch, so Tansu's ListOffsets is exact too
        producer.produce(attempts_topic, key=b"k", value=str(n).encode(), partition=1)
        producer.flush(10)
    group = f"{topics.kafka_topic_namespace}.learner_state"
    await db_pool.execute(
        """
        INSERT INTO processor_offsets (consumer_group, topic, partition, next_offset, updated_at)
        VALUES ($1, $2, 1, 4, $3), ($1, $2, 0, 0, $3), ('elsewhere.learner_state', $2, 0, 0, $3),
               ($4, $2, 2, 5, $3)
        """,
        group,
        attempts_topic,
        NOW - timedelta(seconds=30),
        # Offsets beyond an empty partition: its records went missing (a recreated topic).
        f"{topics.kafka_topic_namespace}.aggregates",
    )
    registry = CollectorRegistry()
    lag = Gauge(
        "learnstream_processor_consumer_lag",
        "lag",
        ["processor", "topic", "partition"],
        registry=registry,
    )
    lag.labels("learner_state", attempts_topic, "1").set(3)
    port, dead_port = services.free_port(), services.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    settings = api_settings.model_copy(
        update={
            "processor_metrics_urls": f"http://127.0.0.1:{port}/metrics, http://127.0.0.1:{dead_port}/metrics"
        }
    )
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
                operator = await sign_in(
                    client, db_pool, settings, tenant_id="acme", roles={Role.PLATFORM_OPERATOR}
                )
                response = await client.get("/v1/operator/pipeline", headers=operator.headers)
                learner = await sign_in(
                    client, db_pool, settings, tenant_id="acme", roles={Role.LEARNER}
                )
                refused = await client.get("/v1/operator/pipeline", headers=learner.headers)
    finally:
        server.shutdown()
        thread.join(5)
    assert refused.status_code == 403
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["broker_reachable"] is True
    # "elsewhere.*" is another deployment's group.
    lost, health = sorted(body["groups"], key=lambda g: g["processor"])
    assert (health["consumer_group"], health["processor"]) == (group, "learner_state")
    # attempts is empty although 4 records are committed: flagged.
    assert [p.split(" although")[0] for p in health["problems"]] == ["view attempts is empty"]
    assert lost["processor"] == "aggregates"
    assert [p.split(":")[0] for p in lost["problems"]] == [f"{attempts_topic}[2]"]
    assert "committed offset 5 but the topic holds no record at 4" in lost["problems"][0]
    (topic,) = health["topics"]
    assert (topic["partitions"], topic["committed"], topic["end_offset"], topic["lag"]) == (
        2,
        4,
        7,
        3,
    )
    assert topic["seconds_since_commit"] >= 30
    reachable, dead = body["workers"]
    assert reachable["reachable"] is True
    assert reachable["lag"] == {f"learner_state {attempts_topic}": 3}
    assert dead["reachable"] is False
    assert dead["error"]
