"""docs/operations.md's "Rebuilding a view" followed literally, with workers running.

Real attempts are applied by a ``learner_state`` worker; skill_mastery is then corrupted
(every p_mastery overwritten, as a bad deploy might). The section's commands run as
written (taken from the document's code blocks), as subprocesses, while the worker keeps
running and more attempts arrive. The rebuilt views equal the originals (and a plain
BKT replay), the views were never empty meanwhile, a worker started afterwards gets
partitions and applies new attempts, and the documented lag SQL answers one row per
partition at the topic's end. Every wait polls with a generous bound; nothing is timed.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import asyncpg

from learnstream import db
from learnstream.kafka import Stream
from learnstream.settings import REPO_ROOT, Settings
from processors.app import app_id
from tests.integration.processors.support import (
    DATASET,
    WorkerProcess,
    expected_mastery,
    offsets_reached,
    produce,
    read_attempts,
    stored_mastery,
    wait_for,
    worker_env,
)

OPERATIONS = REPO_ROOT / "docs" / "operations.md"


def section(title: str) -> str:
    text = OPERATIONS.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def documented_commands() -> list[list[str]]:
    """The rebuild section's shell commands, comments dropped, in order."""
    commands = []
    for block in code_blocks(section("Rebuilding a view"), "sh"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def run(env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "python", argv
    return subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


async def snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    """The learner-state views, without the columns that record when rows were written."""
    return {
        "skill_mastery": await stored_mastery(pool),
        "attempts": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT tenant_id, event_id, user_id, skill_ids, correct, score, occurred_at, "
                "kafka_partition, kafka_offset FROM attempts"
            )
        ),
        "review_schedule": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT tenant_id, user_id, item_id, algorithm, state::text, due_at, reviews, "
                "last_event_id FROM review_schedule"
            )
        ),
        "learner_ability": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT tenant_id, user_id, ability, n_responses, last_event_id "
                "FROM learner_ability"
            )
        ),
    }


async def test_rebuild_section_followed_literally_with_workers_running(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "learner_state")
    specs = read_attempts(shared_data / DATASET, students=24, limit=2400)
    first, during, after = specs[:1500], specs[1500:2000], specs[2000:]
    ends = produce(settings, topic, [(s.key(), s.value()) for s in first])
    env = worker_env(settings)
    worker = WorkerProcess("learner_state", env, tmp_path / "worker.log")
    worker.start()
    try:
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what="the first attempts applied",
            timeout_s=180,
            worker=worker,
        )
        original = await snapshot(db_pool)
        assert original["skill_mastery"] == expected_mastery(first)
        await db_pool.execute("UPDATE skill_mastery SET p_mastery = 0.5")

        commands = documented_commands()
        assert [c[:4] for c in commands] == [
            ["python", "-m", "infra.rebuild_view", "learner_state"]
        ] * len(commands), commands
        assert any("--dry-run" in c for c in commands)
        assert any("--yes" in c for c in commands)

        # Attempts keep arriving during the rebuild; the views must never be empty.
        produced: dict[int, int] = {}
        producer = threading.Thread(
            target=lambda: produced.update(
                produce(
                    settings, topic, [(s.key(), s.value()) for s in during], chunk=50, pause_s=0.2
                )
            )
        )
        empty_seen: list[str] = []
        stop_watch = asyncio.Event()

        async def watch_rows() -> None:
            while not stop_watch.is_set():
                for table in ("skill_mastery", "attempts"):
                    if await db_pool.fetchval(f"SELECT count(*) FROM {table}") == 0:
                        empty_seen.append(table)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_rows())
        producer.start()
        try:
            for argv in commands:
                done = await asyncio.to_thread(run, env, argv)
                assert done.returncode == 0, done.stdout + done.stderr
                if "--dry-run" in argv:
                    assert "dry run: nothing changed" in done.stdout
                    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery") > 0
        finally:
            await asyncio.to_thread(producer.join, 120)
            stop_watch.set()
            await watcher
        assert not empty_seen, f"views seen empty during the rebuild: {set(empty_seen)}"
        assert worker.alive(), worker.log_tail()
        everything = {p: max(ends.get(p, 0), produced.get(p, 0)) for p in ends | produced}
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, everything),
            what="the attempts produced during the rebuild applied",
            timeout_s=180,
            worker=worker,
        )
        assert await stored_mastery(db_pool) == expected_mastery(first + during)
        rebuilt = await snapshot(db_pool)
        first_ids = {s.event_id for s in first}
        assert [r for r in rebuilt["attempts"] if str(r[1]) in first_ids] == original["attempts"]
    finally:
        worker.kill(signal.SIGTERM)

    # Workers rejoin afterwards: a fresh worker gets the partitions and applies new attempts.
    last = produce(settings, topic, [(s.key(), s.value()) for s in after])
    restarted = WorkerProcess("learner_state", env, tmp_path / "worker2.log")
    restarted.start()
    try:
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, last),
            what="attempts applied by a worker started after the rebuild",
            timeout_s=180,
            worker=restarted,
        )
    finally:
        restarted.kill(signal.SIGKILL)
    assert await stored_mastery(db_pool) == expected_mastery(specs)
    assert await db_pool.fetchval("SELECT count(*) FROM attempts") == len(specs)
    schemas = await db_pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild\\_\\_%'"
    )
    assert schemas == 0

    # The documented lag query, with this test's namespace for the default one.
    (lag_sql,) = code_blocks(section("Consumer lag with standard Kafka tooling"), "sql")
    lag_sql = lag_sql.replace("'learnstream.", f"'{settings.kafka_topic_namespace}.")
    conn = await db.connect(settings, role="owner")
    try:
        rows = await conn.fetch(lag_sql)
    finally:
        await conn.close()
    final = {p: max(everything.get(p, 0), last.get(p, 0)) for p in everything | last}
    assert {(r["topic"], r["partition"]): r["next_offset"] for r in rows} == {
        (topic, p): end for p, end in final.items()
    }
