"""A consumer group left stuck by Tansu's departed-leader fault is repaired.

The fault (docs/operations.md, "A consumer group that assigns nothing"): a member that
leads a re-forming group sends LeaveGroup; Tansu v0.6.0 removes it but keeps it as the
leader, so every worker joining afterwards is a follower that is never assigned. Here
the departed leader is made with raw protocol requests (join with the processor's own
assignor, leave before syncing), a real ``learner_state`` worker then joins and applies
nothing; ``python -m infra.group_repair learner_state`` clears the leader and the
worker gets every partition and applies every record.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

from infra.rebuild_view import source_topics
from learnstream.kafka import Stream
from learnstream.settings import REPO_ROOT, Settings
from processors.app import app_id, create_app
from tests.integration.processors.support import (
    DATASET,
    WorkerProcess,
    applied_count,
    offsets_reached,
    produce,
    read_attempts,
    wait_for,
    worker_env,
)


async def leave_as_leader_while_forming(settings: Settings, group: str) -> str:
    """Join ``group`` as its first member (its leader) and leave before syncing."""
    assignor = create_app(settings, "learner_state").assignor
    metadata = assignor.metadata(set(source_topics(settings, "learner_state"))).encode()  # type: ignore[attr-defined]
    session_ms = int(settings.consumer_session_timeout_s * 1000)
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        protocols = [(assignor.name, metadata)]  # type: ignore[attr-defined]
        first = await client.send(
            node, JoinGroupRequest(group, session_ms, session_ms, "", None, "consumer", protocols)
        )
        member = first.member_id
        joined = await client.send(
            node,
            JoinGroupRequest(group, session_ms, session_ms, member, None, "consumer", protocols),
        )
        assert joined.error_code == 0, joined
        assert joined.leader_id == member, joined
        left = await client.send(node, LeaveGroupRequest(group, member))
        assert left.error_code == 0, left
        return str(member)
    finally:
        await client.close()


async def test_a_group_stuck_behind_a_departed_leader_is_repaired(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"processor_web_port": 0})
    topic = settings.topic(Stream.ATTEMPTS)
    group = app_id(settings, "learner_state")
    departed = await leave_as_leader_while_forming(settings, group)
    specs = read_attempts(shared_data / DATASET, students=8, limit=300)
    ends = produce(settings, topic, [(s.key(), s.value()) for s in specs])
    env = worker_env(settings)
    worker = WorkerProcess("learner_state", env, tmp_path / "worker.log")
    worker.start()
    try:
        # Stuck: the worker joins over and over and applies nothing for several rounds.
        await wait_for(
            lambda: _joined_at_least(worker, 3),
            what="three join rounds",
            timeout_s=120,
            worker=worker,
        )
        assert await applied_count(db_pool, group, topic) == 0
        assert "Setting newly assigned partitions" not in worker.log_tail(100_000)

        repaired = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "infra.group_repair", "learner_state"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert f"stuck behind departed leader {departed}" in repaired.stdout
        await wait_for(
            lambda: offsets_reached(db_pool, group, topic, ends),
            what="every record applied after the repair",
            timeout_s=180,
            worker=worker,
        )
    finally:
        worker.kill(signal.SIGKILL)


async def _joined_at_least(worker: WorkerProcess, rounds: int) -> bool:
    return worker.log_tail(1_000_000).count("Joined group") >= rounds
