"""The fraud worker on the real broker and PostgreSQL, on constructed scenarios.

Each scenario's right verdict is known by construction:

* honest warm-up: 30 learners answer two items at a human pace with varied answers:
  no fraud_signals row for any of them (no row means score 0);
* rapid: a correct answer in 300 ms to an item whose median is ~10 s: rapid
  response with the expected weight, below the alert;
* velocity: 45 answers one second apart: impossible velocity from the 21st on,
  flagged once the weight passes the alert threshold;
* collusion: three learners of one class give the same uncommon wrong answer within
  two minutes (each ends with two partners, the first re-scored as the others come);
  a learner of another class with the same answer is not involved;
* person misfit: right on the hardest calibrated items, wrong on the easiest;
* shared device: five accounts on one device within the hour (all five sessions
  flagged), two on another (nothing).

Everything is produced to one partition so the order is the one written here. The
FraudScored events carry the final scores, and flagged_attempts/flagged_sessions
list exactly the flagged subjects.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from learnstream.events.v1 import attempt_pb2, derived_pb2, envelope_pb2, session_pb2
from learnstream.kafka import Stream, learner_key
from learnstream.settings import Settings
from processors.app import app_id
from scheduler.fraud import DEFAULT_FRAUD_CONFIG
from tests.integration.processors.crash import produce_in_order, stable_uuid
from tests.integration.processors.support import (
    consume_all,
    offsets_reached,
    running_worker,
    wait_for,
    worker_env,
)

TENANT = "tenant-f"
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def user(name: str) -> str:
    return stable_uuid("fraud-test", name)


@dataclass
class Scenario:
    """The records to produce, in order, and the event ids of interest."""

    topics: Settings
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    ids: dict[str, list[str]] = field(default_factory=dict)

    def attempt(
        self,
        tag: str,
        who: str,
        at: datetime,
        *,
        item: str,
        correct: bool,
        response: str = "",
        ms: int = 0,
    ) -> None:
        event_id = str(uuid.uuid4())
        envelope = envelope_pb2.Envelope(event_id=event_id, tenant_id=TENANT, user_id=user(who))
        envelope.occurred_at.FromDatetime(at)
        event = attempt_pb2.AttemptEvent(
            envelope=envelope,
            item_id=item,
            skill_ids=[f"skill-of-{item}"],
            correct=correct,
            response=response,
            response_time_ms=ms,
        )
        self.records.append(
            (
                self.topics.topic(Stream.ATTEMPTS),
                learner_key(TENANT, user(who)),
                event.SerializeToString(),
            )
        )
        self.ids.setdefault(tag, []).append(event_id)

    def session(self, who: str, at: datetime, *, session_id: str, device: str) -> None:
        envelope = envelope_pb2.Envelope(
            event_id=str(uuid.uuid4()), tenant_id=TENANT, user_id=user(who), session_id=session_id
        )
        envelope.occurred_at.FromDatetime(at)
        event = session_pb2.SessionEvent(
            envelope=envelope, action=session_pb2.SESSION_ACTION_STARTED, device_id=device
        )
        self.records.append(
            (
                self.topics.topic(Stream.SESSIONS),
                learner_key(TENANT, user(who)),
                event.SerializeToString(),
            )
        )


async def write_people(pool: asyncpg.Pool, classes: dict[str, list[str]]) -> None:
    await pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", TENANT)
    members = sorted({m for names in classes.values() for m in names})
    await pool.executemany(
        "INSERT INTO users (id, tenant_id, email) VALUES ($1::uuid, $2, $3)",
        [(user(m), TENANT, f"{m}@example.org") for m in members],
    )
    for name, names in classes.items():
        class_id = stable_uuid("class", name)
        await pool.execute(
            "INSERT INTO classes (tenant_id, class_id, name) VALUES ($1, $2::uuid, $3)",
            TENANT,
            class_id,
            name,
        )
        await pool.executemany(
            "INSERT INTO class_members (tenant_id, class_id, user_id, member_role) "
            "VALUES ($1, $2::uuid, $3::uuid, 'learner')",
            [(TENANT, class_id, user(m)) for m in names],
        )


async def test_each_signal_fires_exactly_where_constructed(
    topics: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    config = DEFAULT_FRAUD_CONFIG
    await write_people(db_pool, {"class-a": ["c1", "c2", "c3"], "class-b": ["d1"]})
    await db_pool.executemany(
        "INSERT INTO irt_item_parameters (tenant_id, item_id, a, b, c) VALUES ($1, $2, 1.5, $3, 0)",
        [(TENANT, f"m{k}", -2.5 + 5.0 * k / 29) for k in range(30)],
    )
    s = Scenario(settings)
    clock = T0
    # Honest warm-up: items i1 and i2, ~10 s each, 15 different wrong answers on i1.
    for n in range(30):
        clock += timedelta(seconds=7)
        right = n % 2 == 0
        s.attempt(
            "honest",
            f"h{n}",
            clock,
            item="i1",
            correct=right,
            response="12" if right else f"w{n}",
            ms=8_000 + 150 * n,
        )
        s.attempt(
            "honest",
            f"h{n}",
            clock + timedelta(seconds=20),
            item="i2",
            correct=True,
            response="ok",
            ms=9_000 + 100 * n,
        )
    clock += timedelta(minutes=2)
    s.attempt("rapid", "r1", clock, item="i1", correct=True, response="12", ms=300)
    for k in range(45):
        s.attempt(
            "velocity",
            "bot",
            clock + timedelta(seconds=k),
            item=f"v{k}",
            correct=True,
            response="ok",
        )
    clock += timedelta(minutes=2)
    for n, who in enumerate(("c1", "c2", "c3", "d1")):
        s.attempt(
            f"colluder-{who}",
            who,
            clock + timedelta(seconds=30 * n),
            item="i1",
            correct=False,
            response=" X = 7 " if n % 2 else "x=7",
        )
    clock += timedelta(minutes=5)
    for k in range(30):  # hardest items right, easiest wrong
        s.attempt(
            "misfit",
            "mf",
            clock + timedelta(seconds=20 * k),
            item=f"m{k}",
            correct=k >= 15,
            response="a",
            ms=15_000,
        )
    for n in range(5):
        s.session(
            f"lab{n}", clock + timedelta(minutes=5 * n), session_id=f"lab-s{n}", device="lab-pc"
        )
    for n in range(2):
        s.session(
            f"home{n}", clock + timedelta(minutes=n), session_id=f"home-s{n}", device="home-pc"
        )

    ends = produce_in_order(settings, s.records, partition=0)
    group = app_id(settings, "fraud")

    async def all_applied() -> bool:
        reached = [await offsets_reached(db_pool, group, t, e) for t, e in ends.items()]
        return all(reached)

    with running_worker("fraud", worker_env(settings), tmp_path / "fraud.log") as worker:
        await wait_for(all_applied, what="all offsets stored", timeout_s=90, worker=worker)

    rows = {
        r["subject_id"]: r
        for r in await db_pool.fetch("SELECT * FROM fraud_signals WHERE tenant_id = $1", TENANT)
    }
    # Honest learners: no row at all.
    assert not set(s.ids["honest"]) & set(rows)

    rapid = rows[s.ids["rapid"][0]]
    ratio = 300 / 10_000  # the median of i1 is close to 10 s; the weight barely moves with it
    speed = 1 - ratio / config.rapid_ratio
    expected_rapid = (
        config.rapid_min_weight + (config.rapid_max_weight - config.rapid_min_weight) * speed
    )
    assert rapid["w_rapid_response"] == pytest.approx(expected_rapid, abs=0.02)
    assert rapid["score"] == rapid["w_rapid_response"]
    assert not rapid["flagged"]

    bot = s.ids["velocity"]
    limit = config.velocity_max_answers
    assert not set(bot[:limit]) & set(rows)
    for k, event_id in enumerate(bot[limit:], start=limit + 1):
        assert rows[event_id]["w_velocity"] == pytest.approx(
            min(1.0, 0.5 + 0.5 * (k - limit) / limit)
        )
    flagged_bot = {e for e in bot if e in rows and rows[e]["flagged"]}
    assert flagged_bot == {
        e for e in bot if e in rows and rows[e]["score"] >= settings.fraud_alert_threshold
    }
    assert bot[-1] in flagged_bot

    for who in ("c1", "c2", "c3"):
        row = rows[s.ids[f"colluder-{who}"][0]]
        assert row["w_collusion"] == pytest.approx(0.75), who  # two partners each, in the end
        assert [r["signal"] for r in json.loads(row["reasons"])] == ["collusion"]
    assert s.ids["colluder-d1"][0] not in rows

    misfit = [rows[e] for e in s.ids["misfit"] if e in rows]
    assert misfit
    assert all(r["w_person_misfit"] > 0 and r["w_rapid_response"] == 0 for r in misfit)

    sessions = {
        r["subject_id"]: r
        for r in await db_pool.fetch(
            "SELECT * FROM fraud_signals WHERE subject_kind = 'session' AND tenant_id = $1", TENANT
        )
    }
    five = 0.5 + 0.5 * (5 - config.device_max_accounts) / config.device_max_accounts
    assert set(sessions) == {f"lab-s{n}" for n in range(5)}
    assert all(
        r["w_shared_device"] == pytest.approx(five) and r["flagged"] for r in sessions.values()
    )

    flagged_attempts = {
        r["event_id"] for r in await db_pool.fetch("SELECT event_id FROM flagged_attempts")
    }
    assert flagged_attempts == {
        e for e, r in rows.items() if r["flagged"] and r["subject_kind"] == "attempt"
    }
    flagged_sessions = {
        r["session_id"] for r in await db_pool.fetch("SELECT session_id FROM flagged_sessions")
    }
    assert flagged_sessions == set(sessions)

    # The last FraudScored of every subject (all of a subject's events share its
    # learner's partition, so they arrive in order) carries its final score and reasons.
    last: dict[str, Any] = {}

    def final_scores_seen(messages: list[Any]) -> bool:
        last.clear()
        for message in messages:
            event = derived_pb2.FraudScored.FromString(message.value())
            is_attempt = event.cause_event_id in rows
            last[event.cause_event_id if is_attempt else event.envelope.session_id] = event
        return all(k in last and last[k].score == r["score"] for k, r in rows.items())

    consume_all(settings, settings.topic(Stream.FRAUD), until=final_scores_seen, timeout_s=30)
    for subject, row in rows.items():
        assert last[subject].score == row["score"], subject
        assert last[subject].alert == row["flagged"]
        assert len(last[subject].reasons) == len(json.loads(row["reasons"]))
