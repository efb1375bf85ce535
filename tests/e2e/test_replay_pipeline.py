"""The walking skeleton end to end, as separate processes over real connections.

Real answers (pyBKT's ASSISTments ``as.csv``) are posted to the ingest API over HTTP,
flow through the broker to the mastery processor, land in PostgreSQL, and are read
back through the read API. The view must equal a pure replay of ``scheduler.bkt``
over the same answers; posting everything again must change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra import demo, replay, services
from learnstream.apikeys import Scope, create_api_key
from learnstream.settings import Settings
from scheduler.bkt import DEFAULT_PARAMS, update

TENANT = "e2e"
ANSWERS = 1500


@pytest.fixture
async def pipeline(topics: Settings, db_pool: asyncpg.Pool) -> AsyncIterator[Settings]:
    """Ingest, the mastery processor and the read API running as child processes."""
    settings = topics.model_copy(
        update={
            "ingest_port": services.free_port(),
            "api_port": services.free_port(),
            "processor_web_port": services.free_port(),
            "run_dir": topics.run_dir / topics.kafka_topic_namespace,
        }
    )
    try:
        demo.start_process(settings, "ingest", ["ingest"])
        demo.start_process(settings, "processor-learner_state", ["processors", "learner_state"])
        demo.start_process(settings, "api", ["api"])
        for name, port in (("ingest", settings.ingest_port), ("api", settings.api_port)):
            await demo.wait_ready(
                f"http://127.0.0.1:{port}/readyz",
                timeout_s=60,
                log_path=settings.run_dir / f"{name}.log",
            )
        yield settings
    finally:
        demo.stop_all(settings)


def expected_view(attempts: list[replay.ReplayAttempt]) -> dict[tuple[str, str], tuple[float, int]]:
    """(user, skill) -> (p_mastery, attempts) by replaying scheduler.bkt in order."""
    view: dict[tuple[str, str], tuple[float, int]] = {}
    for attempt in attempts:
        for skill in attempt.skill_ids:
            p_mastery, count = view.get((attempt.user_id, skill), (DEFAULT_PARAMS.prior, 0))
            p_mastery = update(p_mastery, 1.0 if attempt.correct else 0.0, DEFAULT_PARAMS)
            view[(attempt.user_id, skill)] = (p_mastery, count + 1)
    return view


async def stored_view(pool: asyncpg.Pool) -> dict[tuple[str, str], tuple[float, int]]:
    rows = await pool.fetch(
        "SELECT user_id, skill_id, p_mastery, attempts FROM skill_mastery WHERE tenant_id = $1",
        TENANT,
    )
    return {(r["user_id"], r["skill_id"]): (r["p_mastery"], r["attempts"]) for r in rows}


@pytest.mark.slow
async def test_real_answers_flow_from_http_to_the_read_api(
    pipeline: Settings, db_pool: asyncpg.Pool, shared_data: Path
) -> None:
    settings = pipeline
    attempts = replay.assistments_as_csv(shared_data / "assistments2009_pybkt_as_2020" / "as.csv")[
        :ANSWERS
    ]
    events = [replay.attempt_event(a, dataset="e2e", tenant_id=TENANT) for a in attempts]
    requests = replay.shard_by_learner(events, shards=3, batch_size=200)
    async with db_pool.acquire() as conn:
        api_key = (
            await create_api_key(
                conn,
                tenant_id=TENANT,
                app_name="e2e",
                scopes={Scope.EVENTS_WRITE, Scope.VIEWS_READ},  # posts, then reads mastery
            )
        ).plaintext

    first = await demo.post_replay(settings, api_key, requests, len(events))
    assert first.outcomes == {"accepted": ANSWERS}
    await asyncio.wait_for(demo.wait_for_mastery(settings, TENANT, ANSWERS), timeout=120)

    expected = expected_view(attempts)
    stored = await stored_view(db_pool)
    assert stored.keys() == expected.keys()
    for key, (p_mastery, count) in expected.items():
        assert stored[key][1] == count, key
        assert stored[key][0] == pytest.approx(p_mastery, abs=1e-12), key

    learner = attempts[0].user_id
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(
            f"http://127.0.0.1:{settings.api_port}/v1/learners/{learner}/mastery",
            headers={"Authorization": f"Bearer {api_key}"},
        )
    assert answer.status_code == 200
    served = {s["skill_id"]: (s["p_mastery"], s["attempts"]) for s in answer.json()["skills"]}
    assert served == {skill: stored[(user, skill)] for (user, skill) in stored if user == learner}

    # A client retrying everything: all duplicates, nothing counted twice.
    second = await demo.post_replay(settings, api_key, requests, len(events))
    assert second.outcomes == {"duplicate": ANSWERS}
    await asyncio.sleep(2)  # give a wrongly republished event time to show up
    assert await stored_view(db_pool) == stored
