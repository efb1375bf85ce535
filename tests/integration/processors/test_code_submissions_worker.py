"""The code-submissions worker as deployed, followed by the learner-state worker.

Proves, on the real broker and PostgreSQL: every submission is recorded once in
``code_submissions`` with its status (analyzed, tests_only, unparsable with the
reason, no_tests) and its static metrics; a submission with a signal becomes one
AttemptEvent on the attempts topic (deterministic id, exercise skills plus construct
skills, score = passed / total); the learner-state worker turns those into mastery;
corrupted and unparsable submissions (a syntax error, null bytes, nesting past the
parser) crash nothing and move no mastery, not even through their tests; a record
that is not a valid submission goes to the dead-letter topic.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from learnstream.events.v1 import attempt_pb2
from learnstream.kafka import DEADLETTER_PROCESSOR_HEADER, Stream
from learnstream.settings import Settings
from processors.app import app_id
from processors.code_metrics import analyze_python
from processors.offsets import derived_event_id
from tests.integration.processors.submissions import BROKEN, JAVASCRIPT, PYTHON, submission
from tests.integration.processors.support import (
    consume_all,
    offsets_reached,
    produce,
    running_worker,
    wait_for,
    worker_env,
)

RECURSIVE = PYTHON["factorial"][1][0].format(f="fact", v="acc")
COMPREHENSION = PYTHON["evens"][1][0].format(f="evens", v="x")


async def run_to_end(
    name: str, settings: Settings, pool: asyncpg.Pool, topic: str, ends: dict[int, int], log: Path
) -> None:
    with running_worker(name, worker_env(settings), log) as worker:
        await wait_for(
            lambda: offsets_reached(pool, app_id(settings, name), topic, ends),
            what=f"{name}: all offsets stored",
            timeout_s=90,
            worker=worker,
        )


async def test_submissions_are_recorded_and_become_attempts(
    topics: Settings, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    names = {"f": "solve", "v": "x"}
    specs = [
        submission(0, "alice", "factorial", RECURSIVE, passed=5, total=5),
        submission(1, "alice", "evens", COMPREHENSION, passed=2, total=4),
        submission(2, "bob", "js_exercise", JAVASCRIPT[0].format(**names), language="javascript"),
        submission(3, "carol", "factorial", BROKEN[0].format(**names), passed=0, total=5),
        submission(4, "carol", "factorial", BROKEN[1].format(**names), passed=5, total=5),
        submission(5, "dave", "evens", BROKEN[2], passed=3, total=5),
        submission(6, "erin", "evens", COMPREHENSION, passed=0, total=0),
    ]
    poison = submission(7, "frank", "evens", COMPREHENSION, passed=6, total=5)
    records = [(s.key(), s.value()) for s in specs]
    records += [(poison.key(), poison.value()), records[0]]  # and alice's first, retried
    source_topic = settings.topic(Stream.CODE_SUBMISSIONS)
    ends = produce(settings, source_topic, records)
    await run_to_end(
        "code_submissions", settings, db_pool, source_topic, ends, tmp_path / "code.log"
    )

    rows = {
        r["user_id"] + "/" + str(r["event_id"]): r
        for r in await db_pool.fetch("SELECT * FROM code_submissions ORDER BY occurred_at")
    }
    assert len(rows) == len(specs)
    by_id = {str(r["event_id"]): r for r in rows.values()}
    status = {s.user_id + s.item_id[:4]: by_id[s.event_id]["status"] for s in specs}
    assert status == {
        "alicefact": "analyzed",
        "aliceeven": "analyzed",
        "bobjs_e": "tests_only",
        "carolfact": "unparsable",  # both of carol's: the syntax error and the null bytes
        "daveeven": "unparsable",
        "erineven": "no_tests",
    }
    reasons = [by_id[s.event_id]["reason"] for s in specs[3:6]]
    assert "SyntaxError" in reasons[0]
    assert "null bytes" in reasons[1]
    assert "too many nested parentheses" in reasons[2]
    recursive = by_id[specs[0].event_id]
    assert json.loads(recursive["metrics"]) == analyze_python(RECURSIVE).as_json()  # type: ignore[union-attr]
    assert recursive["construct_skills"] == [
        "python.conditionals",
        "python.functions",
        "python.recursion",
    ]
    assert by_id[specs[1].event_id]["score"] == 0.5

    with_signal = [specs[0], specs[1], specs[2]]
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    messages = consume_all(
        settings, attempts_topic, until=lambda m: len(m) >= len(with_signal), timeout_s=20
    )
    derived = {
        event.envelope.event_id: event
        for event in (attempt_pb2.AttemptEvent.FromString(m.value()) for m in messages)
    }
    assert set(derived) == {derived_event_id(s.event_id, "code_attempt") for s in with_signal}
    first = derived[derived_event_id(specs[0].event_id, "code_attempt")]
    assert list(first.skill_ids) == [
        "arithmetic",
        "python.conditionals",
        "python.functions",
        "python.recursion",
    ]
    assert (first.item_id, first.correct, first.score) == ("factorial", True, 1.0)

    dead = consume_all(
        settings, settings.topic(Stream.DEADLETTER), until=lambda m: len(m) >= 1, timeout_s=20
    )
    assert [m.value() for m in dead] == [poison.value()]
    assert dict(dead[0].headers())[DEADLETTER_PROCESSOR_HEADER] == b"code_submissions"

    attempt_ends: dict[int, int] = {}
    for message in messages:
        partition = message.partition()
        attempt_ends[partition] = max(attempt_ends.get(partition, 0), message.offset() + 1)
    await run_to_end(
        "learner_state", settings, db_pool, attempts_topic, attempt_ends, tmp_path / "state.log"
    )
    mastery = {
        (r["user_id"], r["skill_id"]): r["attempts"]
        for r in await db_pool.fetch("SELECT user_id, skill_id, attempts FROM skill_mastery")
    }
    assert mastery == {
        ("alice", "arithmetic"): 1,
        ("alice", "python.conditionals"): 1,
        ("alice", "python.functions"): 2,
        ("alice", "python.recursion"): 1,
        ("alice", "lists"): 1,
        ("alice", "python.comprehensions"): 1,
        ("bob", "programming"): 1,
    }
