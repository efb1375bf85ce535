"""kill -9 recovery of the code-submissions workers: the view and the attempts exactly once.

1,500 generated submissions (Python with various constructs, JavaScript, corrupted
and unparsable ones, some without tests) are produced as a live stream while
code-submissions workers come and go: two share the partitions, one is SIGKILLed
and the other takes over, one stops with SIGTERM, one more is SIGKILLed, the last
runs to the end (tests/integration/processors/scenarios.py).

``code_submissions`` must then hold every submission once, with what an
uninterrupted assessment gives (status, reason, score, metrics, construct skills,
derived attempt id); the attempts topic must hold an AttemptEvent for every
submission with a signal, repeats (published before a commit that a kill
prevented) being identical copies, and none for the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from learnstream.kafka import EVENT_ID_HEADER, Stream
from learnstream.settings import Settings
from processors.code_submissions import Submission, assess
from processors.offsets import derived_event_id
from tests.integration.processors.scenarios import run_kill_scenario
from tests.integration.processors.submissions import SubmissionSpec, generate
from tests.integration.processors.support import consume_all

SUBMISSIONS = 1500


def as_submission(spec: SubmissionSpec) -> Submission:
    return Submission(
        event_id=spec.event_id,
        tenant_id=spec.tenant_id,
        user_id=spec.user_id,
        session_id="",
        item_id=spec.item_id,
        item_version=1,
        skill_ids=spec.skill_ids,
        language=spec.language.lower(),
        source=spec.source,
        tests_passed=spec.tests_passed,
        tests_total=spec.tests_total,
        runtime_ms=25,
        occurred_at=spec.occurred_at,
        received_at=None,
    )


@pytest.mark.slow
async def test_killed_code_submission_workers_record_each_submission_once(
    topics: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 50})
    specs = generate(SUBMISSIONS, learners=80, seed=11)
    run = await run_kill_scenario(
        "code_submissions",
        settings,
        db_pool,
        settings.topic(Stream.CODE_SUBMISSIONS),
        [(spec.key(), spec.value()) for spec in specs],
        tmp_path,
        chunk=40,
        pause_s=0.4,
    )
    seed = run.seed

    expected = {}
    for spec in specs:
        a = assess(as_submission(spec))
        attempt_id = derived_event_id(spec.event_id, "code_attempt") if a.attempt_skills else None
        expected[spec.event_id] = (
            a.status,
            a.reason,
            a.score,
            None if a.metrics is None else a.metrics.as_json(),
            list(a.construct_skills),
            attempt_id,
        )
    rows = await db_pool.fetch(
        "SELECT event_id, status, reason, score, metrics, construct_skills, attempt_event_id "
        "FROM code_submissions"
    )
    stored = {
        str(r["event_id"]): (
            r["status"],
            r["reason"],
            r["score"],
            None if r["metrics"] is None else json.loads(r["metrics"]),
            r["construct_skills"],
            None if r["attempt_event_id"] is None else str(r["attempt_event_id"]),
        )
        for r in rows
    }
    assert stored == expected, f"seed {seed}"

    wanted = {row[-1] for row in expected.values() if row[-1] is not None}
    copies: dict[str, set[bytes]] = {}
    read = 0

    def every_attempt_seen(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            event_id = dict(message.headers())[EVENT_ID_HEADER].decode()
            copies.setdefault(event_id, set()).add(message.value())
        read = len(messages)
        return set(copies) >= wanted

    consume_all(settings, settings.topic(Stream.ATTEMPTS), until=every_attempt_seen, timeout_s=30)
    assert set(copies) == wanted, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"
