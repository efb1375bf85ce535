"""A corrupted view is rebuilt from its topic with ``python -m infra.rebuild_view``.

Real attempts are processed by the learner_state worker; then skill_mastery is corrupted
(every p_mastery overwritten, as a bad deploy might). The command refuses while the
worker is running (it would keep writing into the emptied views) and changes nothing;
with the worker stopped it resets the group's Kafka offsets to 0 and empties the views
and the group's processor_offsets. A restarted worker replays the topic and skill_mastery
equals a plain scheduler.bkt replay again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

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


def rebuild(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.rebuild_view", "learner_state", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_corrupted_view_is_rebuilt_from_the_topic(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "learner_state")
    specs = read_attempts(shared_data / DATASET, students=20, limit=1500)
    ends = produce(settings, topic, [(spec.key(), spec.value()) for spec in specs])
    env = worker_env(settings)
    worker = WorkerProcess("learner_state", env, tmp_path / "worker.log")
    worker.start()
    try:
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what="all offsets stored",
            timeout_s=120,
            worker=worker,
        )
        assert await stored_mastery(db_pool) == expected_mastery(specs)
        await db_pool.execute("UPDATE skill_mastery SET p_mastery = 0.5")

        refused = rebuild(env, "--yes", "--join-timeout", "25")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "its workers are running" in refused.stderr
        assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery") > 0
    finally:
        worker.kill(signal.SIGTERM)  # a clean stop leaves the consumer group

    dry = rebuild(env, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "TRUNCATE skill_mastery" in dry.stdout
    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery") > 0

    done = rebuild(env, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert await db_pool.fetchval("SELECT count(*) FROM skill_mastery") == 0
    assert await db_pool.fetchval("SELECT count(*) FROM attempts") == 0
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM processor_offsets WHERE consumer_group = $1", group
        )
        == 0
    )
    # Kafka's committed offsets are checked by what follows: had they stayed at the end,
    # the restarted worker would read nothing and the emptied offsets never come back.
    worker.start()
    try:
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what="all offsets stored after the rebuild",
            timeout_s=120,
            worker=worker,
        )
    finally:
        worker.kill(signal.SIGKILL)
    assert await stored_mastery(db_pool) == expected_mastery(specs)
